#!/usr/bin/env python3
"""Dump a GGUF model's token bytes to the compact file tern-sampler's tests read.

Usage: dump-vocab.py MODEL.gguf OUT.bin.gz

Each token is decoded to the bytes it stands for in generated text, as llama.cpp's
`llama_vocab::token_to_piece` does for normal tokens:
  - gpt2 (byte-level BPE): each character maps back to one byte (the GPT-2 byte<->unicode table);
  - llama (SentencePiece): U+2581 becomes a space, <0xXX> byte tokens become that byte.
Control and unused tokens get no bytes (a constraint never allows them); user-defined tokens
keep their text. End-of-generation ids: the EOS id plus the tokens llama.cpp also treats as
end of generation by their text (<|im_end|>, <|endoftext|>, <end_of_turn>, ...).

File format (gzip): b"TVOC1", u32 token count, u32 EOG count, EOG ids (u32 each), then per
token a u16 length and the bytes; little-endian.
"""
import gzip
import struct
import sys

from gguf import GGUFReader

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# llama.cpp src/llama-vocab.cpp (load): texts it adds to the end-of-generation set.
EOG_TEXTS = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "<|end_of_text|>"}


def gpt2_byte_decoder():
    """The inverse of GPT-2's bytes_to_unicode table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def main():
    model, out = sys.argv[1], sys.argv[2]
    reader = GGUFReader(model)
    field = lambda name: reader.fields[name].contents() if name in reader.fields else None
    kind = field("tokenizer.ggml.model")
    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    decoder = gpt2_byte_decoder()
    pieces = []
    for text, ty in zip(tokens, types):
        if ty in (CONTROL, UNUSED, UNKNOWN):
            pieces.append(b"")
        elif ty == USER_DEFINED:
            pieces.append(text.encode("utf-8"))
        elif kind == "gpt2":
            pieces.append(bytes(decoder[c] for c in text))
        elif kind == "llama":
            if ty == BYTE:
                pieces.append(bytes([int(text[3:5], 16)]))
            else:
                pieces.append(text.replace("\u2581", " ").encode("utf-8"))
        else:
            sys.exit(f"unsupported tokenizer model {kind!r}")
    eog = {int(field("tokenizer.ggml.eos_token_id"))}
    eog |= {i for i, t in enumerate(tokens) if t in EOG_TEXTS}
    eog = sorted(eog)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(b"TVOC1" + struct.pack("<II", len(pieces), len(eog)))
        f.write(b"".join(struct.pack("<I", i) for i in eog))
        for p in pieces:
            f.write(struct.pack("<H", len(p)) + p)
    print(f"{model}: {len(pieces)} tokens ({kind}), end of generation {eog} -> {out}")


if __name__ == "__main__":
    main()

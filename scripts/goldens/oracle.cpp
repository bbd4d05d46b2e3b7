// oracle: the reference side of tern's fidelity goldens.
//
// Why it exists: tern must produce the same tokens and logits as llama.cpp. This small
// program drives llama.cpp's public C API (include/llama.h of the reference build) and
// prints, for every prompt it is given, exactly what the goldens record: the prompt's
// token ids, the top-k logits at the last prompt position, and a greedy continuation
// with the top-2 margin of every step. scripts/goldens/generate.py builds it with g++
// against libllama.so and turns its output into tests/goldens/<model>/*.json.
//
// Written against the API only (llama.h, ggml-cpu.h); settings mirror what llama.cpp's
// own command-line tools use by default (common/common.h `common_params`, turned into
// context parameters by `common_context_params_to_llama`), so that the oracle and
// `llama-completion --temp 0` agree; generate.py checks that they do.
//
// Input: a prompt file, one prompt per line: `<id>\t<prompt as lowercase hex of its
// UTF-8 bytes>` (hex keeps tabs, newlines and any byte intact).
// Output: one JSON document on stdout. Floats are printed with 9 significant digits,
// which round-trips every float32 exactly. Token texts are hex too, because a single
// token may hold part of a UTF-8 character.
//
// Usage: oracle MODEL.gguf PROMPTS.tsv [--threads N] [--n-predict N] [--top-k N]
//               [--ctx N] [--ubatch N] [--swa-full] [--no-repack] [--flash-attn auto|on|off]

#include "ggml-cpu.h"
#include "llama.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

struct Options {
    std::string model_path;
    std::string prompts_path;
    int threads = 1;
    int n_predict = 32;
    int top_k = 20;
    int min_ctx = 2048;
    int n_ubatch = 512;       // common_params::n_ubatch default
    bool swa_full = false;    // common_params::swa_full default (the C API default is true)
    bool repack = true;       // llama_model_params::use_extra_bufts default (weight repacking)
    llama_flash_attn_type flash_attn = LLAMA_FLASH_ATTN_TYPE_AUTO;
};

struct Prompt {
    std::string id;
    std::string text;
};

// Everything llama.cpp logs goes to stderr only when ORACLE_VERBOSE is set, but the
// line that says whether "auto" flash attention was resolved to on is remembered, so
// the goldens can record what was really used.
struct LogState {
    bool verbose = false;
    std::string flash_attn_resolved = "unknown";
};
LogState g_log;

void log_callback(ggml_log_level /*level*/, const char * text, void * /*user*/) {
    if (text == nullptr) {
        return;
    }
    if (std::strstr(text, "Flash Attention enabled") != nullptr) {
        g_log.flash_attn_resolved = "enabled";
    } else if (std::strstr(text, "Flash Attention not supported") != nullptr) {
        g_log.flash_attn_resolved = "disabled";
    }
    if (g_log.verbose) {
        std::fputs(text, stderr);
    }
}

[[noreturn]] void die(const std::string & message) {
    std::fprintf(stderr, "oracle: %s\n", message.c_str());
    std::exit(1);
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string from_hex(const std::string & hex, size_t line_number) {
    if (hex.size() % 2 != 0) {
        die("prompt file line " + std::to_string(line_number) + ": odd hex length");
    }
    std::string out;
    out.reserve(hex.size() / 2);
    for (size_t i = 0; i < hex.size(); i += 2) {
        const int hi = hex_value(hex[i]);
        const int lo = hex_value(hex[i + 1]);
        if (hi < 0 || lo < 0) {
            die("prompt file line " + std::to_string(line_number) + ": bad hex digit");
        }
        out.push_back(static_cast<char>(hi * 16 + lo));
    }
    return out;
}

std::string to_hex(const std::string & bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        out.push_back(digits[c >> 4]);
        out.push_back(digits[c & 15]);
    }
    return out;
}

std::string json_string(const std::string & s) {
    // Only used for ASCII identifiers and llama.cpp's own info strings.
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    return out + "\"";
}

std::string json_float(float v) {
    if (std::isinf(v)) {
        return v > 0 ? "\"inf\"" : "\"-inf\"";
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
    return buf;
}

std::vector<Prompt> read_prompts(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        die("cannot open prompt file " + path);
    }
    std::vector<Prompt> prompts;
    std::string line;
    size_t line_number = 0;
    while (std::getline(in, line)) {
        ++line_number;
        if (line.empty()) {
            continue;
        }
        const size_t tab = line.find('\t');
        if (tab == std::string::npos) {
            die("prompt file line " + std::to_string(line_number) + ": no tab");
        }
        prompts.push_back({line.substr(0, tab), from_hex(line.substr(tab + 1), line_number)});
    }
    return prompts;
}

Options parse_args(int argc, char ** argv) {
    Options o;
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value after " + a);
            return argv[++i];
        };
        if (a == "--threads") o.threads = std::atoi(next().c_str());
        else if (a == "--n-predict") o.n_predict = std::atoi(next().c_str());
        else if (a == "--top-k") o.top_k = std::atoi(next().c_str());
        else if (a == "--ctx") o.min_ctx = std::atoi(next().c_str());
        else if (a == "--ubatch") o.n_ubatch = std::atoi(next().c_str());
        else if (a == "--swa-full") o.swa_full = true;
        else if (a == "--no-repack") o.repack = false;
        else if (a == "--flash-attn") {
            const std::string v = next();
            if (v == "auto") o.flash_attn = LLAMA_FLASH_ATTN_TYPE_AUTO;
            else if (v == "on") o.flash_attn = LLAMA_FLASH_ATTN_TYPE_ENABLED;
            else if (v == "off") o.flash_attn = LLAMA_FLASH_ATTN_TYPE_DISABLED;
            else die("--flash-attn takes auto, on or off, not " + v);
        } else if (!a.empty() && a[0] == '-') die("unknown option " + a);
        else positional.push_back(a);
    }
    if (positional.size() != 2) {
        die("usage: oracle MODEL.gguf PROMPTS.tsv [--threads N] [--n-predict N] [--top-k N] "
            "[--ctx N] [--ubatch N] [--swa-full] [--no-repack] [--flash-attn auto|on|off]");
    }
    if (o.threads < 1 || o.n_predict < 1 || o.top_k < 2 || o.min_ctx < 16 || o.n_ubatch < 1) {
        die("numeric options must be positive (top-k at least 2)");
    }
    o.model_path = positional[0];
    o.prompts_path = positional[1];
    return o;
}

std::string token_text(const llama_vocab * vocab, llama_token token) {
    std::vector<char> buf(64);
    int n = llama_token_to_piece(vocab, token, buf.data(), static_cast<int32_t>(buf.size()), 0, true);
    if (n < 0) {
        buf.resize(static_cast<size_t>(-n));
        n = llama_token_to_piece(vocab, token, buf.data(), static_cast<int32_t>(buf.size()), 0, true);
    }
    if (n < 0) die("llama_token_to_piece failed for token " + std::to_string(token));
    return std::string(buf.data(), static_cast<size_t>(n));
}

std::vector<llama_token> tokenize(const llama_vocab * vocab, const std::string & text) {
    // add_special = true, parse_special = true: what llama-completion does with a raw
    // prompt (BOS when the model adds one, special-token text turned into its token).
    std::vector<llama_token> tokens(text.size() + 8);
    int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                           static_cast<int32_t>(tokens.size()), true, true);
    if (n < 0) {
        if (n == INT32_MIN) die("tokenization overflow");
        tokens.resize(static_cast<size_t>(-n));
        n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                           static_cast<int32_t>(tokens.size()), true, true);
    }
    if (n < 0) die("llama_tokenize failed");
    tokens.resize(static_cast<size_t>(n));
    return tokens;
}

// Indices of the `k` largest values, largest first; equal values by lower id first.
std::vector<int32_t> top_indices(const float * logits, int32_t n_vocab, int k) {
    std::vector<int32_t> idx(static_cast<size_t>(n_vocab));
    for (int32_t i = 0; i < n_vocab; ++i) idx[static_cast<size_t>(i)] = i;
    const int kk = std::min(k, static_cast<int>(n_vocab));
    std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    idx.resize(static_cast<size_t>(kk));
    return idx;
}

struct Step {
    llama_token token;
    float logit;
    llama_token runner_up;
    float runner_up_logit;
};

struct Result {
    uint32_t n_ctx = 0;
    std::vector<llama_token> tokens;
    std::vector<int32_t> top;
    std::vector<float> top_logits;
    std::vector<Step> steps;
};

void decode_or_die(llama_context * ctx, llama_batch & batch, const std::string & what) {
    const int32_t rc = llama_decode(ctx, batch);
    if (rc != 0) die("llama_decode failed (" + std::to_string(rc) + ") on " + what);
}

Result run_prompt(llama_model * model, const Options & o, const Prompt & p,
                  const std::vector<bool> & is_eog) {
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    Result r;
    r.tokens = tokenize(vocab, p.text);
    const int32_t n_prompt = static_cast<int32_t>(r.tokens.size());
    if (n_prompt == 0) die("prompt " + p.id + " has no tokens");

    // A fresh context per prompt: nothing of an earlier prompt can leak into this one.
    llama_context_params cp = llama_context_default_params();
    const uint32_t needed = static_cast<uint32_t>(n_prompt + o.n_predict);
    uint32_t n_ctx = static_cast<uint32_t>(o.min_ctx);
    while (n_ctx < needed) n_ctx += 256;
    cp.n_ctx = n_ctx;
    cp.n_batch = std::max<uint32_t>(2048, static_cast<uint32_t>(n_prompt));
    cp.n_ubatch = static_cast<uint32_t>(o.n_ubatch);
    cp.n_seq_max = 1;
    cp.n_threads = o.threads;
    cp.n_threads_batch = o.threads;
    cp.flash_attn_type = o.flash_attn;
    cp.type_k = GGML_TYPE_F16;
    cp.type_v = GGML_TYPE_F16;
    cp.swa_full = o.swa_full;
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (ctx == nullptr) die("cannot create a context for prompt " + p.id);
    r.n_ctx = llama_n_ctx(ctx);

    // The whole prompt in one llama_decode call (llama.cpp splits it into ubatches of
    // n_ubatch internally); logits only for the last position.
    llama_batch batch = llama_batch_init(std::max(n_prompt, 1), 0, 1);
    batch.n_tokens = n_prompt;
    for (int32_t i = 0; i < n_prompt; ++i) {
        batch.token[i] = r.tokens[static_cast<size_t>(i)];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = i == n_prompt - 1 ? 1 : 0;
    }
    decode_or_die(ctx, batch, "prompt " + p.id);

    std::vector<float> masked(static_cast<size_t>(n_vocab));
    for (int step = 0; step < o.n_predict; ++step) {
        const float * logits = llama_get_logits_ith(ctx, -1);
        if (logits == nullptr) die("no logits for prompt " + p.id);
        if (step == 0) {
            r.top = top_indices(logits, n_vocab, o.top_k);
            for (int32_t id : r.top) r.top_logits.push_back(logits[id]);
        }
        // --ignore-eos as llama.cpp does it: every end-of-generation token gets a
        // logit bias of -inf (common/common.cpp, logit_bias_eog), then greedy argmax.
        for (int32_t i = 0; i < n_vocab; ++i) {
            masked[static_cast<size_t>(i)] = is_eog[static_cast<size_t>(i)] ? -INFINITY : logits[i];
        }
        const std::vector<int32_t> best = top_indices(masked.data(), n_vocab, 2);
        r.steps.push_back({best[0], logits[best[0]], best[1], logits[best[1]]});
        if (step + 1 == o.n_predict) break;
        batch.n_tokens = 1;
        batch.token[0] = best[0];
        batch.pos[0] = n_prompt + step;
        batch.n_seq_id[0] = 1;
        batch.seq_id[0][0] = 0;
        batch.logits[0] = 1;
        decode_or_die(ctx, batch, "step " + std::to_string(step) + " of prompt " + p.id);
    }
    llama_batch_free(batch);
    llama_free(ctx);
    return r;
}

std::string meta(const llama_model * model, const char * key) {
    char buf[512];
    const int32_t n = llama_model_meta_val_str(model, key, buf, sizeof buf);
    return n < 0 ? std::string() : std::string(buf);
}

}  // namespace

int main(int argc, char ** argv) {
    const Options o = parse_args(argc, argv);
    g_log.verbose = std::getenv("ORACLE_VERBOSE") != nullptr;
    llama_log_set(log_callback, nullptr);
    llama_backend_init();

    const std::vector<Prompt> prompts = read_prompts(o.prompts_path);

    llama_model_params mp = llama_model_default_params();  // the tools' defaults
    mp.use_extra_bufts = o.repack;
    llama_model * model = llama_model_load_from_file(o.model_path.c_str(), mp);
    if (model == nullptr) die("cannot load model " + o.model_path);
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    std::vector<bool> is_eog(static_cast<size_t>(n_vocab));
    std::vector<int32_t> eog_ids;
    for (int32_t i = 0; i < n_vocab; ++i) {
        is_eog[static_cast<size_t>(i)] = llama_vocab_is_eog(vocab, i);
        if (is_eog[static_cast<size_t>(i)]) eog_ids.push_back(i);
    }

    std::vector<Result> results;
    results.reserve(prompts.size());
    for (const Prompt & p : prompts) {
        results.push_back(run_prompt(model, o, p, is_eog));
    }

    char desc[256];
    llama_model_desc(model, desc, sizeof desc);
    std::string out;
    out += "{\n";
    out += "\"system_info\": " + json_string(llama_print_system_info()) + ",\n";
    out += "\"cpu_features\": {";
    out += "\"avx\": " + std::to_string(ggml_cpu_has_avx());
    out += ", \"avx2\": " + std::to_string(ggml_cpu_has_avx2());
    out += ", \"f16c\": " + std::to_string(ggml_cpu_has_f16c());
    out += ", \"fma\": " + std::to_string(ggml_cpu_has_fma());
    out += ", \"avx_vnni\": " + std::to_string(ggml_cpu_has_avx_vnni());
    out += ", \"avx512\": " + std::to_string(ggml_cpu_has_avx512());
    out += ", \"avx512_vbmi\": " + std::to_string(ggml_cpu_has_avx512_vbmi());
    out += ", \"avx512_vnni\": " + std::to_string(ggml_cpu_has_avx512_vnni());
    out += ", \"avx512_bf16\": " + std::to_string(ggml_cpu_has_avx512_bf16());
    out += ", \"neon\": " + std::to_string(ggml_cpu_has_neon());
    out += ", \"dotprod\": " + std::to_string(ggml_cpu_has_dotprod());
    out += "},\n";
    out += "\"model\": {\"desc\": " + json_string(desc);
    out += ", \"arch\": " + json_string(meta(model, "general.architecture"));
    out += ", \"n_params\": " + std::to_string(llama_model_n_params(model));
    out += ", \"n_vocab\": " + std::to_string(n_vocab);
    out += ", \"n_ctx_train\": " + std::to_string(llama_model_n_ctx_train(model));
    out += ", \"n_swa\": " + std::to_string(llama_model_n_swa(model));
    out += ", \"add_bos\": " + std::string(llama_vocab_get_add_bos(vocab) ? "true" : "false");
    out += ", \"bos\": " + std::to_string(llama_vocab_bos(vocab));
    out += ", \"eos\": " + std::to_string(llama_vocab_eos(vocab));
    out += ", \"eog_ids\": [";
    for (size_t i = 0; i < eog_ids.size(); ++i) out += (i ? ", " : "") + std::to_string(eog_ids[i]);
    out += "]},\n";
    out += "\"settings\": {\"threads\": " + std::to_string(o.threads);
    out += ", \"n_predict\": " + std::to_string(o.n_predict);
    out += ", \"top_k\": " + std::to_string(o.top_k);
    out += ", \"min_ctx\": " + std::to_string(o.min_ctx);
    out += ", \"n_batch\": \"max(2048, prompt length)\"";
    out += ", \"n_ubatch\": " + std::to_string(o.n_ubatch);
    out += ", \"flash_attn\": " + json_string(llama_flash_attn_type_name(o.flash_attn));
    out += ", \"flash_attn_resolved\": " + json_string(g_log.flash_attn_resolved);
    out += ", \"type_k\": \"f16\", \"type_v\": \"f16\"";
    out += ", \"swa_full\": " + std::string(o.swa_full ? "true" : "false");
    out += ", \"weight_repack\": " + std::string(o.repack ? "true" : "false");
    out += ", \"load_mode\": " + json_string(llama_load_mode_name(mp.load_mode));
    out += ", \"tokenize\": {\"add_special\": true, \"parse_special\": true}";
    out += ", \"ignore_eos\": \"eog tokens masked to -inf before greedy argmax\"},\n";
    out += "\"results\": [\n";
    for (size_t pi = 0; pi < results.size(); ++pi) {
        const Result & r = results[pi];
        out += "{\"id\": " + json_string(prompts[pi].id);
        out += ", \"n_ctx\": " + std::to_string(r.n_ctx);
        out += ", \"tokens\": [";
        for (size_t i = 0; i < r.tokens.size(); ++i) out += (i ? ", " : "") + std::to_string(r.tokens[i]);
        out += "], \"top\": [";
        for (size_t i = 0; i < r.top.size(); ++i) {
            out += (i ? ", [" : "[") + std::to_string(r.top[i]) + ", " + json_float(r.top_logits[i]) + "]";
        }
        out += "], \"steps\": [";
        for (size_t i = 0; i < r.steps.size(); ++i) {
            const Step & s = r.steps[i];
            out += (i ? ", [" : "[") + std::to_string(s.token) + ", " + json_float(s.logit) + ", " +
                   std::to_string(s.runner_up) + ", " + json_float(s.runner_up_logit) + ", " +
                   json_string(to_hex(token_text(vocab, s.token))) + "]";
        }
        out += "]}";
        out += pi + 1 < results.size() ? ",\n" : "\n";
    }
    out += "]\n}\n";
    std::fwrite(out.data(), 1, out.size(), stdout);

    llama_model_free(model);
    llama_backend_free();
    return 0;
}

// llama-dump: runs one prompt through llama.cpp and writes every f32 tensor its graph
// computes, for comparing with tern's TERN_DUMP_ACTIVATIONS output layer by layer
// (crates/engine/tools/compare-dumps.py). Uses llama.h's eval callback (`cb_eval`) with
// the settings the goldens use (docs/GOLDENS.md): flash attention auto, F16 KV cache,
// n_ubatch 512, one thread, swa_full off.
//
// Build against the reference build (see docs/GOLDENS.md):
//   R=~/.cache/llama.cpp-reference
//   g++ -O2 -std=c++17 llama-dump.cpp -I$R/src/include -I$R/src/ggml/include \
//       -L$R/build/bin -lllama -lggml -lggml-base -lggml-cpu -Wl,-rpath,$R/build/bin -o llama-dump
// Run:
//   llama-dump MODEL.gguf OUT_DIR TOKEN_ID...
// Writes OUT_DIR/NNNNN-<tensor name>.f32 (raw little-endian f32, ggml order) and prints
// `name width rows sum sum_of_squares` per tensor on stdout.

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

std::string g_out_dir;
int g_seq = 0;

bool on_tensor(ggml_tensor * t, bool ask, void *) {
    if (ask) {
        return true;  // we want every tensor
    }
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) {
        return true;
    }
    std::vector<float> data(ggml_nelements(t));
    ggml_backend_tensor_get(t, data.data(), 0, ggml_nbytes(t));
    double sum = 0, sum_sq = 0;
    for (float v : data) {
        sum += v;
        sum_sq += double(v) * v;
    }
    const long long width = t->ne[0];
    std::printf("%s\t%lld\t%lld\t%.6f\t%.6f\n", t->name, width, (long long)(data.size() / width), sum, sum_sq);
    const std::string path = g_out_dir + "/" + std::to_string(100000 + ++g_seq).substr(1) + "-" + t->name + ".f32";
    if (FILE * f = std::fopen(path.c_str(), "wb")) {
        std::fwrite(data.data(), sizeof(float), data.size(), f);
        std::fclose(f);
    }
    return true;
}

}  // namespace

int main(int argc, char ** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: llama-dump MODEL.gguf OUT_DIR TOKEN_ID...\n");
        return 2;
    }
    g_out_dir = argv[2];
    std::vector<llama_token> tokens;
    for (int i = 3; i < argc; i++) {
        tokens.push_back(std::atoi(argv[i]));
    }
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (model == nullptr) {
        std::fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    llama_context_params params = llama_context_default_params();
    params.n_ctx = 2048;
    while (params.n_ctx < tokens.size() + 32) {
        params.n_ctx += 256;
    }
    params.n_batch = params.n_ctx;
    params.n_ubatch = 512;
    params.n_threads = 1;
    params.n_threads_batch = 1;
    params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    params.swa_full = false;
    params.cb_eval = on_tensor;
    params.cb_eval_user_data = nullptr;
    llama_context * ctx = llama_init_from_model(model, params);
    if (ctx == nullptr || llama_decode(ctx, llama_batch_get_one(tokens.data(), tokens.size())) != 0) {
        std::fprintf(stderr, "decode failed\n");
        return 1;
    }
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}

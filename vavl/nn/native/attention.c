/* Fused CPU attention for small heads, float32: the kernel behind vavl's "cpu_kernel"
 * attention (vavl/nn/native/attention.py binds it with ctypes and registers it as the
 * torch.library op vavl::cpu_attention).
 *
 * Built once, at install time, by the package build (setup.py), with no -march flag: the sweeps
 * (attention_sweeps.h) are compiled once per ISA level, each with its own function target
 * attribute, and the caller picks a level the CPU supports (vavl_attention_best_level):
 *   0 baseline  4 lanes, whatever the compiler targets by default (SSE2 on x86-64, NEON on arm64)
 *   1 avx2      8 lanes, AVX2 + FMA                                      (x86 only)
 *   2 avx512   16 lanes, AVX-512F                                        (x86 only)
 * A level the CPU lacks is refused (status 2), never run.
 *
 * Layouts (float32, element strides): q, k, v, out, o, grad and the gradients of q, k, v are
 * (b, t, C) with any clip and time strides and contiguous channels; head h is channels h * e ..
 * h * e + e - 1. bias: NULL, or transposed and padded, (tk, tq_pad) per (clip, head) with tq_pad =
 * tq rounded up to PAD and zeros in the padding; bias_b / bias_h are its clip and head strides (0
 * when clips or heads share it); gbias, when not NULL, gets its gradient, (b, heads, tk, tq_pad),
 * zeroed by the caller. nk: (tq,) or (b, tq), how many leading keys each row sees (the rest are
 * masked, and past the most any row of a block sees, skipped), so a mask that only cuts each row
 * short (causal, padding at the end) needs no bias. lse: (b * heads, tq).
 *
 * The Python side checks every shape and stride before a pointer gets here, and compares
 * vavl_attention_abi() and vavl_attention_job_size() with its own copy of Job at load.
 *
 * No -ffast-math: the loops are vectorised across independent rows, so no reassociation is needed,
 * and exp is a polynomial (inlined, so no call spills the accumulators).
 */
#include <float.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ABI_VERSION 2  /* bump with any change to Job or to the exported functions */
#define PAD 16         /* bias rows are padded to a multiple of this: the most lanes of any level */
#define E_MAX 64       /* widest head */
#define WIDTHS(X) X(4) X(5) X(6) X(8) X(16) X(32) X(64)

typedef struct {
    int64_t heads, e, tq, tk;
    const float *q, *k, *v;
    int64_t q_b, q_t, k_b, k_t, v_b, v_t;
    const float *bias;
    int64_t bias_b, bias_h;
    const int32_t *nk;
    int64_t nk_b;
    float q_scale;
    uint32_t seed;
    int32_t threshold;  /* dropout: keep where the 16-bit draw, read as int16, >= threshold */
    float drop_scale;   /* 1 / (1 - p); 0 when there is no dropout */
    float *out;         /* forward */
    int64_t out_b, out_t;
    float *lse;
    const float *o, *grad;  /* backward: the forward's output and its gradient */
    int64_t o_b, o_t, grad_b, grad_t;
    float *gq, *gk, *gv;
    int64_t gq_b, gq_t, gk_b, gk_t, gv_b, gv_t;
    float *gbias;       /* NULL, or the bias's gradient in its layout, (b, heads, tk, tq_pad), zeroed */
    int64_t gbias_b, gbias_h;
} Job;

static inline int64_t padded(int64_t tq) { return (tq + PAD - 1) / PAD * PAD; }

/* a 32-bit integer hash: xor-shift / multiply rounds with the constants of Chris Wellons'
 * published "lowbias32" (hash-prospector); every output bit depends on every input bit */
static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16; x *= 0x7feb352dU;
    x ^= x >> 15; x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* the dropout key of row i of a tile: the same at every ISA level, so is every decision */
static inline uint32_t row_key(uint32_t seed, int64_t tile, int64_t tq, int64_t i) {
    uint64_t r = (uint64_t)tile * (uint64_t)tq + (uint64_t)i;
    return mix32(seed ^ mix32((uint32_t)r ^ mix32((uint32_t)(r >> 32) + 0x9e3779b9U)));
}

/* dropout: 1 / (1 - p) where the draw for key j of the row keyed `key` keeps it, else 0 */
static inline float keep_factor(uint32_t key, int64_t j, int32_t threshold, float scale) {
    int32_t draw = (int32_t)(mix32(key + (uint32_t)j * 0x9e3779b9U) >> 16) - 32768;
    return draw >= threshold ? scale : 0.0f;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  /* wide vectors only pass between inlined functions */
#endif

#define LANES 4
#define LEVEL baseline
#define TARGET
#include "attention_sweeps.h"
#undef LANES
#undef LEVEL
#undef TARGET

#if defined(__x86_64__) || defined(__i386__)
#define X86 1
#define LANES 8
#define LEVEL avx2
#define TARGET __attribute__((target("avx2,fma")))
#include "attention_sweeps.h"
#undef LANES
#undef LEVEL
#undef TARGET

#define LANES 16
#define LEVEL avx512
#define TARGET __attribute__((target("avx512f")))
#include "attention_sweeps.h"
#undef LANES
#undef LEVEL
#undef TARGET
#endif

typedef int (*Sweep)(const Job *, int64_t first, int64_t last, int backward);

static const struct { const char *name; int lanes; Sweep sweep; } LEVELS[] = {
    {"baseline", 4, sweep_baseline},
#ifdef X86
    {"avx2", 8, sweep_avx2},
    {"avx512", 16, sweep_avx512},
#endif
};
#define N_LEVELS (int)(sizeof LEVELS / sizeof LEVELS[0])

int vavl_attention_best_level(void) {
#ifdef X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

/* The b * heads tiles split over `threads` threads of the OpenMP pool, which is PyTorch's own
 * (its libgomp is already loaded, so this library binds to it): the threads PyTorch's last
 * operation left spinning pick the work up instead of competing with new ones.
 * -> 0, 1 when a work buffer could not be allocated, 2 for a level this CPU cannot run. */
static int run(const Job *job, int64_t batch, int threads, int level, int backward) {
    if (level < 0 || level > vavl_attention_best_level()) return 2;
    const int64_t tiles = batch * job->heads;
    const Sweep sweep = LEVELS[level].sweep;
    int status = 0;
    if (threads > tiles) threads = (int)tiles;
    if (threads < 1) threads = 1;
#pragma omp parallel num_threads(threads) reduction(| : status)
    {
#ifdef _OPENMP
        const int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
#else
        const int64_t t = 0, n = 1;
#endif
        status |= sweep(job, tiles * t / n, tiles * (t + 1) / n, backward);
    }
    return status;
}

int vavl_attention_abi(void) { return ABI_VERSION; }

int64_t vavl_attention_job_size(void) { return (int64_t)sizeof(Job); }

int vavl_attention_pad(void) { return PAD; }

int vavl_attention_max_width(void) { return E_MAX; }

int vavl_attention_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* the name of a level (NULL past the last one this build has) */
const char *vavl_attention_level_name(int level) { return level >= 0 && level < N_LEVELS ? LEVELS[level].name : NULL; }

int vavl_attention_forward(const Job *job, int64_t batch, int threads, int level) {
    return run(job, batch, threads, level, 0);
}

int vavl_attention_backward(const Job *job, int64_t batch, int threads, int level) {
    return run(job, batch, threads, level, 1);
}

/* The dropout factors the sweeps use, (tiles, tq, tk): for tests and references. */
void vavl_attention_keep(uint32_t seed, int64_t tiles, int64_t tq, int64_t tk, int32_t threshold, float scale,
                         float *out) {
    for (int64_t tile = 0; tile < tiles; tile++)
        for (int64_t i = 0; i < tq; i++) {
            const uint32_t key = row_key(seed, tile, tq, i);
            for (int64_t j = 0; j < tk; j++) out[(tile * tq + i) * tk + j] = keep_factor(key, j, threshold, scale);
        }
}

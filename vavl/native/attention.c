/* Fused CPU attention for small heads (vavl.layers.cpu_attention), float32.
 *
 * A tile is one (clip, head) pair; tiles are split over threads. Within a tile, LANES query rows
 * are handled side by side (one vector lane each) and walk over their keys together: scores,
 * softmax, dropout and the output are formed in one sweep whose working set (LANES scores per key)
 * stays in L1, so the (b, h, tq, tk) weights never go to memory, and no step needs a sum across
 * lanes. The backward recomputes the weights from each row's saved log-sum-exp (as flash
 * attention does) and redraws the dropout decisions from a counter-based hash of (seed, tile, row,
 * key); gradients of keys and values are summed per lane and folded once per tile.
 *
 * Layouts (float32, element strides): q, k, v, out, o, grad and the gradients are (b, t, C) with
 * channels contiguous; head h is channels h * e .. h * e + e - 1 after the slot's first channel,
 * which the pointer points at. bias: NULL, or transposed and padded, (tk, tq_pad) per clip with
 * tq_pad = tq rounded up to LANES and zeros in the padding; bias_b is its clip stride (0 when all
 * clips share it). nk: (tq,) or (b, tq), how many leading keys each row can see: beyond them the
 * bias is -inf, so they are skipped. lse: (b * heads, tq).
 *
 * No -ffast-math: the loops are vectorised across independent rows, so no reassociation is needed,
 * and exp is the polynomial below (inlined, so no call spills the accumulators).
 */
#include <float.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* query rows side by side: one 512-bit vector where there is AVX-512, else 256 bits */
#ifdef __AVX512F__
#define LANES 16
#else
#define LANES 8
#endif
#define E_MAX 64  /* widest head; wider ones stay on the PyTorch path */

typedef float vf __attribute__((vector_size(LANES * 4)));
typedef int32_t vi __attribute__((vector_size(LANES * 4)));
typedef uint32_t vu __attribute__((vector_size(LANES * 4)));

typedef struct {
    int64_t heads, e, tq, tk;
    const float *q, *k, *v;
    int64_t q_b, q_t, k_b, k_t, v_b, v_t;
    const float *bias;
    int64_t bias_b;
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
    int64_t first, last;    /* tiles [first, last) of one thread */
} Job;

#define INLINE static inline __attribute__((always_inline))

INLINE vf load(const float *p) { vf x; memcpy(&x, p, sizeof x); return x; }
INLINE vf splat(float x) { return (vf){0} + x; }
INLINE vf blend(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }
INLINE float hsum(vf v) {  /* halves added until one lane is left: the same order every time */
    typedef float v8 __attribute__((vector_size(32)));
    typedef float v4 __attribute__((vector_size(16)));
    v8 a;
    memcpy(&a, &v, sizeof a);
#if LANES == 16
    v8 b;
    memcpy(&b, (const char *)&v + sizeof a, sizeof b);
    a += b;
#endif
    v4 c, d;
    memcpy(&c, &a, sizeof c);
    memcpy(&d, (const char *)&a + sizeof c, sizeof d);
    c += d;
    return (c[0] + c[2]) + (c[1] + c[3]);
}

/* a 32-bit integer hash: xor-shift / multiply rounds with the constants of Chris Wellons'
 * published "lowbias32" (hash-prospector); every output bit depends on every input bit */
INLINE uint32_t mix32(uint32_t x) {
    x ^= x >> 16; x *= 0x7feb352dU;
    x ^= x >> 15; x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

INLINE vu mix32v(vu x) {
    x ^= x >> 16; x *= 0x7feb352dU;
    x ^= x >> 15; x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

INLINE uint32_t row_key(uint32_t seed, int64_t tile, int64_t tq, int64_t i) {
    uint64_t r = (uint64_t)tile * (uint64_t)tq + (uint64_t)i;
    return mix32(seed ^ mix32((uint32_t)r ^ mix32((uint32_t)(r >> 32) + 0x9e3779b9U)));
}

/* dropout: 1 / (1 - p) where the draw for key j of the row keyed `key` keeps it, else 0 */
INLINE float keep_factor(uint32_t key, int64_t j, int32_t threshold, float scale) {
    int32_t draw = (int32_t)(mix32(key + (uint32_t)j * 0x9e3779b9U) >> 16) - 32768;
    return draw >= threshold ? scale : 0.0f;
}

INLINE vf keep_factors(vu keys, int64_t j, int32_t threshold, float scale) {
    vi draw = (vi)(mix32v(keys + (uint32_t)j * 0x9e3779b9U) >> 16) - 32768;
    return blend(draw >= threshold, splat(scale), splat(0.0f));
}

/* e^x for x <= 88, 0 below -87 (and for -inf): 2^k e^r with k = round(x / ln 2), r reduced in
 * two parts, e^r by a degree-6 polynomial (relative error ~2e-7). */
INLINE vf exp_v(vf x) {
    const vi small = x < -87.0f;
    const vf xc = blend(small, splat(-87.0f), x);
    const vf kf = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;  /* round to nearest */
    vf r = xc - kf * 0.693359375f;
    r = r + kf * 2.12194440e-4f;
    vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const vi bits = (__builtin_convertvector(kf, vi) + 127) << 23;
    return blend(small, splat(0.0f), p * (vf)bits);
}

/* This tile's keys and values, (tk, e) with e contiguous. */
INLINE void load_kv(const Job *J, int64_t b, int64_t h, const int64_t e, float *restrict kb, float *restrict vb) {
    const float *k = J->k + b * J->k_b + h * e, *v = J->v + b * J->v_b + h * e;
    for (int64_t j = 0; j < J->tk; j++)
        for (int64_t c = 0; c < e; c++) {
            kb[j * e + c] = k[j * J->k_t + c];
            vb[j * e + c] = v[j * J->v_t + c];
        }
}

/* Rows i0 .. i0 + LANES - 1 of a tile: how many are real, each one's key count (0 for padding
 * rows), each one's dropout key, and how far the block's keys go (the most any row sees). */
typedef struct {
    int64_t rows, keys_end;
    int32_t nk[LANES];
    vu keys;
} Block;

INLINE Block block_rows(const Job *J, int64_t tile, int64_t b, int64_t i0) {
    Block B = {.rows = J->tq - i0 < LANES ? J->tq - i0 : LANES, .keys_end = 0};
    uint32_t k[LANES];
    for (int l = 0; l < LANES; l++) {
        B.nk[l] = l < B.rows ? J->nk[b * J->nk_b + i0 + l] : 0;
        B.keys_end = B.nk[l] > B.keys_end ? B.nk[l] : B.keys_end;
        k[l] = J->drop_scale != 0.0f ? row_key(J->seed, tile, J->tq, i0 + l) : 0;
    }
    memcpy(&B.keys, k, sizeof k);
    return B;
}

/* lanes <- channel c of rows i0 .. i0 + rows - 1 of x (zeros past them), for c < e */
INLINE void gather_rows(const float *x, int64_t t_stride, int64_t rows, const int64_t e, float scale, vf *out) {
    float t[E_MAX][LANES];
    for (int l = 0; l < LANES; l++)
        for (int64_t c = 0; c < e; c++) t[c][l] = l < rows ? x[l * t_stride + c] * scale : 0.0f;
    for (int64_t c = 0; c < e; c++) memcpy(&out[c], t[c], sizeof(vf));
}

INLINE void scatter_rows(float *x, int64_t t_stride, int64_t rows, const int64_t e, float scale, const vf *in) {
    for (int64_t c = 0; c < e; c++) {
        float t[LANES];
        memcpy(t, &in[c], sizeof t);
        for (int64_t l = 0; l < rows; l++) x[l * t_stride + c] = t[l] * scale;
    }
}

/* the scores of one key for the block's rows: bias + q . k_j */
INLINE vf scores(const vf *qv, const float *kj, const float *brow, const int64_t e) {
    vf x = brow ? load(brow) : splat(0.0f);
    for (int64_t c = 0; c < e; c++) x += qv[c] * kj[c];
    return x;
}

INLINE void forward_tiles(const Job *J, vf *work, const int64_t e) {
    const int64_t tq = J->tq, tk = J->tk, tq_pad = (tq + LANES - 1) / LANES * LANES;
    vf *s = work;
    float *kb = (float *)(s + tk), *vb = kb + tk * e;
    const int drop = J->drop_scale != 0.0f;
    for (int64_t tile = J->first; tile < J->last; tile++) {
        const int64_t b = tile / J->heads, h = tile % J->heads;
        load_kv(J, b, h, e, kb, vb);
        const float *bias = J->bias ? J->bias + b * J->bias_b : NULL;
        for (int64_t i0 = 0; i0 < tq; i0 += LANES) {
            const Block B = block_rows(J, tile, b, i0);
            const int64_t rows = B.rows, n = B.keys_end;
            vf qv[E_MAX], acc[E_MAX];
            gather_rows(J->q + b * J->q_b + i0 * J->q_t + h * e, J->q_t, rows, e, J->q_scale, qv);
            vf m = splat(-FLT_MAX), sum = splat(0.0f);
            for (int64_t j = 0; j < n; j++) {  /* scores and their running max */
                s[j] = scores(qv, kb + j * e, bias ? bias + j * tq_pad + i0 : NULL, e);
                m = blend(s[j] > m, s[j], m);
            }
            for (int64_t c = 0; c < e; c++) acc[c] = splat(0.0f);
            for (int64_t j = 0; j < n; j++) {  /* weights, dropout, weighted values */
                vf w = exp_v(s[j] - m);
                sum += w;
                if (drop) w *= keep_factors(B.keys, j, J->threshold, J->drop_scale);
                for (int64_t c = 0; c < e; c++) acc[c] += w * vb[j * e + c];
            }
            float ms[LANES], sums[LANES];
            memcpy(ms, &m, sizeof ms);
            memcpy(sums, &sum, sizeof sums);
            for (int64_t c = 0; c < e; c++) acc[c] /= sum;
            for (int l = 0; l < rows; l++) {
                const int seen = B.nk[l] > 0 && sums[l] > 0.0f;
                /* a row with no key gets zeros, and FLT_MAX so that the backward's weights are 0 */
                J->lse[tile * tq + i0 + l] = seen ? ms[l] + (float)__builtin_log((double)sums[l]) : FLT_MAX;
                if (!seen)
                    for (int64_t c = 0; c < e; c++) acc[c][l] = 0.0f;
            }
            scatter_rows(J->out + b * J->out_b + i0 * J->out_t + h * e, J->out_t, rows, e, 1.0f, acc);
        }
    }
}

INLINE void backward_tiles(const Job *J, vf *work, const int64_t e) {
    const int64_t tq = J->tq, tk = J->tk, tq_pad = (tq + LANES - 1) / LANES * LANES;
    vf *gk_lanes = work, *gv_lanes = gk_lanes + tk * e;  /* per-lane sums, folded once per tile */
    float *kb = (float *)(gv_lanes + tk * e), *vb = kb + tk * e;
    const int drop = J->drop_scale != 0.0f;
    for (int64_t tile = J->first; tile < J->last; tile++) {
        const int64_t b = tile / J->heads, h = tile % J->heads;
        load_kv(J, b, h, e, kb, vb);
        memset(gk_lanes, 0, 2 * tk * e * sizeof(vf));
        const float *bias = J->bias ? J->bias + b * J->bias_b : NULL;
        for (int64_t i0 = 0; i0 < tq; i0 += LANES) {
            const Block B = block_rows(J, tile, b, i0);
            const int64_t rows = B.rows, n = B.keys_end;
            vf qv[E_MAX], gv[E_MAX], ov[E_MAX], gq[E_MAX];
            gather_rows(J->q + b * J->q_b + i0 * J->q_t + h * e, J->q_t, rows, e, J->q_scale, qv);
            gather_rows(J->grad + b * J->grad_b + i0 * J->grad_t + h * e, J->grad_t, rows, e, 1.0f, gv);
            gather_rows(J->o + b * J->o_b + i0 * J->o_t + h * e, J->o_t, rows, e, 1.0f, ov);
            vf d = splat(0.0f);  /* sum_j P_ij dP_ij = grad_i . out_i */
            for (int64_t c = 0; c < e; c++) {
                d += gv[c] * ov[c];
                gq[c] = splat(0.0f);
            }
            float l_rows[LANES];
            for (int l = 0; l < LANES; l++) l_rows[l] = l < rows ? J->lse[tile * tq + i0 + l] : FLT_MAX;
            const vf lse = load(l_rows);
            for (int64_t j = 0; j < n; j++) {
                const float *kj = kb + j * e, *vj = vb + j * e;
                const vf w = exp_v(scores(qv, kj, bias ? bias + j * tq_pad + i0 : NULL, e) - lse);  /* P */
                const vf f = drop ? keep_factors(B.keys, j, J->threshold, J->drop_scale) : splat(1.0f);
                vf dw = splat(0.0f);  /* gradient of the dropped weight */
                for (int64_t c = 0; c < e; c++) dw += gv[c] * vj[c];
                const vf ds = w * (dw * f - d), wd = w * f;  /* softmax backward; the weight as used */
                vf *gkj = gk_lanes + j * e, *gvj = gv_lanes + j * e;
                for (int64_t c = 0; c < e; c++) {
                    gq[c] += ds * kj[c];
                    gkj[c] += ds * qv[c];
                    gvj[c] += wd * gv[c];
                }
            }
            scatter_rows(J->gq + b * J->gq_b + i0 * J->gq_t + h * e, J->gq_t, rows, e, J->q_scale, gq);
        }
        float *gk = J->gk + b * J->gk_b + h * e, *gvo = J->gv + b * J->gv_b + h * e;
        for (int64_t j = 0; j < tk; j++)
            for (int64_t c = 0; c < e; c++) {
                gk[j * J->gk_t + c] = hsum(gk_lanes[j * e + c]);
                gvo[j * J->gv_t + c] = hsum(gv_lanes[j * e + c]);
            }
    }
}

/* One copy of each sweep per common head width, so that the loops over channels unroll and the
 * per-lane values live in registers; any other width up to E_MAX takes the generic copy. */
#define WIDTHS(X) X(4) X(5) X(6) X(8) X(16) X(32) X(64)
#define FORWARD(E) static void forward_##E(const Job *J, vf *w) { forward_tiles(J, w, E); }
#define BACKWARD(E) static void backward_##E(const Job *J, vf *w) { backward_tiles(J, w, E); }
WIDTHS(FORWARD)
WIDTHS(BACKWARD)
static void forward_any(const Job *J, vf *w) { forward_tiles(J, w, J->e); }
static void backward_any(const Job *J, vf *w) { backward_tiles(J, w, J->e); }

typedef void (*Sweep)(const Job *, vf *);

static Sweep pick(int64_t e, int backward) {
#define CASE(E) case E: return backward ? backward_##E : forward_##E;
    switch (e) { WIDTHS(CASE) default: return backward ? backward_any : forward_any; }
#undef CASE
}

/* One thread's share: tiles [first, last) of the job, with its own work buffer. */
static int run_share(const Job *J, Sweep sweep) {
    /* scores (forward) or per-lane key and value gradients (backward), then keys and values */
    const size_t bytes = (size_t)(2 * J->tk * J->e + J->tk) * sizeof(vf) + (size_t)(2 * J->tk * J->e) * sizeof(float);
    vf *work = aligned_alloc(sizeof(vf), (bytes + sizeof(vf) - 1) / sizeof(vf) * sizeof(vf));
    if (!work) return 1;
    sweep(J, work);
    free(work);
    return 0;
}

/* The b * heads tiles split over `threads` threads of the OpenMP pool, which is PyTorch's own
 * (its libgomp is already loaded, so this library binds to it): the threads PyTorch's last
 * operation left spinning pick the work up instead of competing with new ones. */
static int run(const Job *job, int64_t batch, int threads, int backward) {
    const int64_t tiles = batch * job->heads;
    const Sweep sweep = pick(job->e, backward);
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
        Job share = *job;
        share.first = tiles * t / n;
        share.last = tiles * (t + 1) / n;
        status |= run_share(&share, sweep);
    }
    return status;
}

int vavl_attention_lanes(void) { return LANES; }

int vavl_attention_max_width(void) { return E_MAX; }

int vavl_attention_forward(const Job *job, int64_t batch, int threads) { return run(job, batch, threads, 0); }

int vavl_attention_backward(const Job *job, int64_t batch, int threads) { return run(job, batch, threads, 1); }

/* The dropout factors the sweeps use, (tiles, tq, tk): for tests and references. */
void vavl_attention_keep(uint32_t seed, int64_t tiles, int64_t tq, int64_t tk, int32_t threshold, float scale,
                         float *out) {
    for (int64_t tile = 0; tile < tiles; tile++)
        for (int64_t i = 0; i < tq; i++) {
            const uint32_t key = row_key(seed, tile, tq, i);
            for (int64_t j = 0; j < tk; j++) out[(tile * tq + i) * tk + j] = keep_factor(key, j, threshold, scale);
        }
}

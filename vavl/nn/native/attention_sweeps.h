/* The attention sweeps at one ISA level: attention.c includes this file once per level with
 * LANES (query rows side by side, one vector lane each), LEVEL (a suffix that every name below
 * gets, so that the copies sit side by side in one library) and TARGET (the function attribute
 * that lets the compiler use the level's instructions: no -march flag is involved).
 *
 * A tile is one (clip, head) pair. Within a tile, LANES query rows walk over their keys together:
 * scores, softmax, dropout and the output are formed in one sweep whose working set (LANES scores
 * per key) stays in L1, so the (b, h, tq, tk) weights never go to memory, and no step needs a sum
 * across lanes. The backward recomputes the weights from each row's saved log-sum-exp (as flash
 * attention does) and redraws the dropout decisions from the counter-based hash of attention.c;
 * gradients of keys and values are summed per lane and folded once per tile; the bias's gradient,
 * when asked for, is each score's, stored as the sweep makes it.
 */
#define NAME_(a, b) a##_##b
#define NAME(a, b) NAME_(a, b)
#define vf NAME(vf, LEVEL)
#define vi NAME(vi, LEVEL)
#define vu NAME(vu, LEVEL)
#define Block NAME(Block, LEVEL)
#define load NAME(load, LEVEL)
#define splat NAME(splat, LEVEL)
#define blend NAME(blend, LEVEL)
#define hsum NAME(hsum, LEVEL)
#define mix32v NAME(mix32v, LEVEL)
#define keep_factors NAME(keep_factors, LEVEL)
#define exp_v NAME(exp_v, LEVEL)
#define load_kv NAME(load_kv, LEVEL)
#define block_rows NAME(block_rows, LEVEL)
#define gather_rows NAME(gather_rows, LEVEL)
#define scatter_rows NAME(scatter_rows, LEVEL)
#define scores NAME(scores, LEVEL)
#define tile_bias NAME(tile_bias, LEVEL)
#define forward_tiles NAME(forward_tiles, LEVEL)
#define backward_tiles NAME(backward_tiles, LEVEL)
#define INLINE static inline __attribute__((always_inline)) TARGET

typedef float vf __attribute__((vector_size(LANES * 4)));
typedef int32_t vi __attribute__((vector_size(LANES * 4)));
typedef uint32_t vu __attribute__((vector_size(LANES * 4)));

INLINE vf load(const float *p) { vf x; memcpy(&x, p, sizeof x); return x; }
INLINE vf splat(float x) { return (vf){0} + x; }
INLINE vf blend(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

INLINE float hsum(vf v) {  /* halves added until one lane is left: the same order every time */
    typedef float v4 __attribute__((vector_size(16)));
#if LANES == 4
    v4 c = v;
#else
    typedef float v8 __attribute__((vector_size(32)));
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
#endif
    return (c[0] + c[2]) + (c[1] + c[3]);
}

INLINE vu mix32v(vu x) {  /* mix32 of attention.c, lane by lane */
    x ^= x >> 16; x *= 0x7feb352dU;
    x ^= x >> 15; x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

INLINE vf keep_factors(vu keys, int64_t j, int32_t threshold, float scale) {  /* keep_factor, lane by lane */
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
 * rows; also as a vector), each one's dropout key, and how far the block's keys go (the most any
 * row sees). */
typedef struct {
    int64_t rows, keys_end;
    int32_t nk[LANES];
    vi nkv;
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
    memcpy(&B.nkv, B.nk, sizeof B.nk);
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

/* the scores of key j for the block's rows: bias + q . k_j, or -inf for a row that does not
 * see key j (past its key count) */
INLINE vf scores(const Block *B, int64_t j, const vf *qv, const float *kj, const float *brow, const int64_t e) {
    vf x = brow ? load(brow) : splat(0.0f);
    for (int64_t c = 0; c < e; c++) x += qv[c] * kj[c];
    return blend((vi){0} + (int32_t)j < B->nkv, x, splat(-__builtin_inff()));
}

INLINE const float *tile_bias(const Job *J, int64_t b, int64_t h) {
    return J->bias ? J->bias + b * J->bias_b + h * J->bias_h : NULL;
}

INLINE void forward_tiles(const Job *J, vf *work, int64_t first, int64_t last, const int64_t e) {
    const int64_t tq = J->tq, tk = J->tk, tq_pad = padded(tq);
    vf *s = work;
    float *kb = (float *)(s + tk), *vb = kb + tk * e;
    const int drop = J->drop_scale != 0.0f;
    for (int64_t tile = first; tile < last; tile++) {
        const int64_t b = tile / J->heads, h = tile % J->heads;
        load_kv(J, b, h, e, kb, vb);
        const float *bias = tile_bias(J, b, h);
        for (int64_t i0 = 0; i0 < tq; i0 += LANES) {
            const Block B = block_rows(J, tile, b, i0);
            const int64_t rows = B.rows, n = B.keys_end;
            vf qv[E_MAX], acc[E_MAX];
            gather_rows(J->q + b * J->q_b + i0 * J->q_t + h * e, J->q_t, rows, e, J->q_scale, qv);
            vf m = splat(-FLT_MAX), sum = splat(0.0f);
            for (int64_t j = 0; j < n; j++) {  /* scores and their running max */
                s[j] = scores(&B, j, qv, kb + j * e, bias ? bias + j * tq_pad + i0 : NULL, e);
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

INLINE void backward_tiles(const Job *J, vf *work, int64_t first, int64_t last, const int64_t e) {
    const int64_t tq = J->tq, tk = J->tk, tq_pad = padded(tq);
    vf *gk_lanes = work, *gv_lanes = gk_lanes + tk * e;  /* per-lane sums, folded once per tile */
    float *kb = (float *)(gv_lanes + tk * e), *vb = kb + tk * e;
    const int drop = J->drop_scale != 0.0f;
    for (int64_t tile = first; tile < last; tile++) {
        const int64_t b = tile / J->heads, h = tile % J->heads;
        load_kv(J, b, h, e, kb, vb);
        memset(gk_lanes, 0, 2 * tk * e * sizeof(vf));
        const float *bias = tile_bias(J, b, h);
        float *gbias = J->gbias ? J->gbias + b * J->gbias_b + h * J->gbias_h : NULL;
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
                const vf w = exp_v(scores(&B, j, qv, kj, bias ? bias + j * tq_pad + i0 : NULL, e) - lse);  /* P */
                const vf f = drop ? keep_factors(B.keys, j, J->threshold, J->drop_scale) : splat(1.0f);
                vf dw = splat(0.0f);  /* gradient of the dropped weight */
                for (int64_t c = 0; c < e; c++) dw += gv[c] * vj[c];
                const vf ds = w * (dw * f - d), wd = w * f;  /* softmax backward; the weight as used */
                if (gbias) memcpy(gbias + j * tq_pad + i0, &ds, sizeof ds);  /* d score / d bias = 1 */
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
#define FORWARD(E) static TARGET void NAME(forward_##E, LEVEL)(const Job *J, vf *w, int64_t a, int64_t z) { forward_tiles(J, w, a, z, E); }
#define BACKWARD(E) static TARGET void NAME(backward_##E, LEVEL)(const Job *J, vf *w, int64_t a, int64_t z) { backward_tiles(J, w, a, z, E); }
WIDTHS(FORWARD)
WIDTHS(BACKWARD)
static TARGET void NAME(forward_any, LEVEL)(const Job *J, vf *w, int64_t a, int64_t z) { forward_tiles(J, w, a, z, J->e); }
static TARGET void NAME(backward_any, LEVEL)(const Job *J, vf *w, int64_t a, int64_t z) { backward_tiles(J, w, a, z, J->e); }

/* Tiles [first, last) of the job, with a work buffer of their own: scores (forward) or per-lane
 * key and value gradients (backward), then the tile's keys and values. */
static TARGET int NAME(sweep, LEVEL)(const Job *J, int64_t first, int64_t last, int backward) {
    void (*run)(const Job *, vf *, int64_t, int64_t);
#define CASE(E) case E: run = backward ? NAME(backward_##E, LEVEL) : NAME(forward_##E, LEVEL); break;
    switch (J->e) {
        WIDTHS(CASE)
        default: run = backward ? NAME(backward_any, LEVEL) : NAME(forward_any, LEVEL);
    }
#undef CASE
    const size_t bytes = (size_t)(2 * J->tk * J->e + J->tk) * sizeof(vf) + (size_t)(2 * J->tk * J->e) * sizeof(float);
    vf *work = aligned_alloc(sizeof(vf), (bytes / sizeof(vf) + 1) * sizeof(vf));  /* never 0 bytes */
    if (!work) return 1;
    run(J, work, first, last);
    free(work);
    return 0;
}

#undef FORWARD
#undef BACKWARD
#undef INLINE
#undef vf
#undef vi
#undef vu
#undef Block
#undef load
#undef splat
#undef blend
#undef hsum
#undef mix32v
#undef keep_factors
#undef exp_v
#undef load_kv
#undef block_rows
#undef gather_rows
#undef scatter_rows
#undef scores
#undef tile_bias
#undef forward_tiles
#undef backward_tiles

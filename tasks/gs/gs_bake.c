/* gs_bake.c - a decoder source's neural Gaussians baked into a standard 3DGS set (the rule is in
 * gs_bake.h): per anchor chunk, one decode per view of the anchors that view sees, weighted
 * sums per neural Gaussian, then a small SH least-squares solve per Gaussian (Cholesky in
 * double). */
#include "gs_bake.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"

#define K GS_SCAFFOLD_K

void gs_sh_basis(int deg, const double d[3], double *Y) {
    /* the rasterizer's constants (framework/splat/splat_project.c, 3DGS auxiliary.h) */
    const double C0 = 0.28209479177387814, C1 = 0.4886025119029199;
    const double C2[5] = {1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
                          -1.0925484305920792, 0.5462742152960396};
    const double C3[7] = {-0.5900435899266435, 2.890611442640554,   -0.4570457994644658,
                          0.3731763325901154,  -0.4570457994644658, 1.445305721320277,
                          -0.5900435899266435};
    double x = d[0], y = d[1], z = d[2];
    Y[0] = C0;
    if (deg < 1) return;
    Y[1] = -C1 * y, Y[2] = C1 * z, Y[3] = -C1 * x;
    if (deg < 2) return;
    double xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
    Y[4] = C2[0] * xy;
    Y[5] = C2[1] * yz;
    Y[6] = C2[2] * (2 * zz - xx - yy);
    Y[7] = C2[3] * xz;
    Y[8] = C2[4] * (xx - yy);
    if (deg < 3) return;
    Y[9] = C3[0] * y * (3 * xx - yy);
    Y[10] = C3[1] * xy * z;
    Y[11] = C3[2] * y * (4 * zz - xx - yy);
    Y[12] = C3[3] * z * (2 * zz - 3 * xx - 3 * yy);
    Y[13] = C3[4] * x * (4 * zz - xx - yy);
    Y[14] = C3[5] * z * (xx - yy);
    Y[15] = C3[6] * x * (xx - 3 * yy);
}

pk_status gs_gaussians_append(pk_gaussians *a, pk_gaussians *b) {
    if (a->n == 0 && !a->xyz) {
        *a = *b;
        memset(b, 0, sizeof *b);
        return PK_OK;
    }
    if (a->sh_degree != b->sh_degree) {
        gaussians_free(b);
        return pk_error(PK_ERR_INVALID, "bake: SH degrees %d and %d differ", a->sh_degree,
                        b->sh_degree);
    }
    pk_gaussians c;
    pk_status st = gaussians_create(&c, a->n + b->n, a->sh_degree);
    if (st != PK_OK) {
        gaussians_free(b);
        return st;
    }
    size_t rest = (size_t)3 * ((size_t)(a->sh_degree + 1) * (size_t)(a->sh_degree + 1) - 1);
    struct {
        float *dst, *x, *y;
        size_t w;
    } f[6] = {{c.xyz, a->xyz, b->xyz, 3},
              {c.f_dc, a->f_dc, b->f_dc, 3},
              {c.f_rest, a->f_rest, b->f_rest, rest},
              {c.opacity, a->opacity, b->opacity, 1},
              {c.scale, a->scale, b->scale, 3},
              {c.rot, a->rot, b->rot, 4}};
    for (int i = 0; i < 6; i++) {
        if (!f[i].w) continue;
        memcpy(f[i].dst, f[i].x, sizeof(float) * f[i].w * a->n);
        memcpy(f[i].dst + f[i].w * a->n, f[i].y, sizeof(float) * f[i].w * b->n);
    }
    gaussians_free(a);
    gaussians_free(b);
    *a = c;
    return PK_OK;
}

/* Solves (n x n, packed upper triangle row by row) A x = b in place by Cholesky; false when
 * A is not positive definite. */
static bool chol_solve(int n, const double *Ap, double *b3) {
    double L[16 * 16];
    int p = 0;
    double A[16 * 16];
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++, p++)
            A[i * n + j] = A[j * n + i] = Ap[p];
    for (int j = 0; j < n; j++) {
        double s = A[j * n + j];
        for (int k = 0; k < j; k++)
            s -= L[j * n + k] * L[j * n + k];
        if (!(s > 0)) return false;
        L[j * n + j] = sqrt(s);
        for (int i = j + 1; i < n; i++) {
            double t = A[i * n + j];
            for (int k = 0; k < j; k++)
                t -= L[i * n + k] * L[j * n + k];
            L[i * n + j] = t / L[j * n + j];
        }
    }
    for (int c = 0; c < 3; c++) { /* b3: (n, 3) */
        double y[16];
        for (int i = 0; i < n; i++) {
            double t = b3[i * 3 + c];
            for (int k = 0; k < i; k++)
                t -= L[i * n + k] * y[k];
            y[i] = t / L[i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) {
            double t = y[i];
            for (int k = i + 1; k < n; k++)
                t -= L[k * n + i] * b3[k * 3 + c];
            b3[i * 3 + c] = t / L[i * n + i];
        }
    }
    return true;
}

/* Camera centre of a world-to-camera [R t]: -R^T t. */
static void centre(const splat_camera *cam, float out[3]) {
    const float *M = cam->world_to_cam;
    for (int i = 0; i < 3; i++)
        out[i] = -(M[0 * 4 + i] * M[3] + M[1 * 4 + i] * M[7] + M[2 * 4 + i] * M[11]);
}

/* Per neural Gaussian sums of one anchor chunk. */
typedef struct acc {
    double *A, *R, *ls, *q, *w, *o, *nv; // (G, ntri) (G, Kc, 3) (G, 3) (G, 4) (G) (G) (G)
} acc;

pk_status gs_bake_scaffold(gs_scaffold *s, const splat_camera *cams, const int *views, int n,
                           const gs_bake_options *o, pk_gaussians *g) {
    memset(g, 0, sizeof *g);
    int deg = o->sh_degree < 0 ? 0 : o->sh_degree > 3 ? 3 : o->sh_degree;
    int kc = (deg + 1) * (deg + 1), ntri = kc * (kc + 1) / 2;
    double ridge = o->ridge > 0 ? o->ridge : 1e-3;
    int64_t chunk = o->anchor_chunk > 0 ? o->anchor_chunk : 4096;
    pk_ctx *c = gs_scaffold_ctx(s);
    int64_t na = gs_scaffold_anchors(s);
    float *anc, *off, *scal;
    gs_scaffold_arrays(s, &anc, NULL, &off, &scal);
    int64_t G = chunk * K;
    acc a;
    a.A = malloc(sizeof(double) * (size_t)(G * ntri));
    a.R = malloc(sizeof(double) * (size_t)(G * kc * 3));
    a.ls = malloc(sizeof(double) * (size_t)(G * 3));
    a.q = malloc(sizeof(double) * (size_t)(G * 4));
    a.w = malloc(sizeof(double) * (size_t)G);
    a.o = malloc(sizeof(double) * (size_t)G);
    a.nv = malloc(sizeof(double) * (size_t)G);
    int32_t *sel = malloc(sizeof(int32_t) * (size_t)(chunk + 1));
    float *op = malloc(sizeof(float) * (size_t)(G + 1));
    float *cov = malloc(sizeof(float) * (size_t)(7 * G + 1));
    float *col = malloc(sizeof(float) * (size_t)(3 * G + 1));
    pk_gaussians part = {0};
    pk_status st = PK_OK;
    if (!a.A || !a.R || !a.ls || !a.q || !a.w || !a.o || !a.nv || !sel || !op || !cov || !col)
        st = pk_error(PK_ERR_NOMEM, "bake: out of memory");
    bool was = pk_set_grad_enabled(c, false);
    for (int64_t lo = 0; st == PK_OK && lo < na; lo += chunk) {
        int64_t hi = lo + chunk < na ? lo + chunk : na, g0 = (hi - lo) * K;
        memset(a.A, 0, sizeof(double) * (size_t)(g0 * ntri));
        memset(a.R, 0, sizeof(double) * (size_t)(g0 * kc * 3));
        memset(a.ls, 0, sizeof(double) * (size_t)(g0 * 3));
        memset(a.q, 0, sizeof(double) * (size_t)(g0 * 4));
        memset(a.w, 0, sizeof(double) * (size_t)g0);
        memset(a.o, 0, sizeof(double) * (size_t)g0);
        memset(a.nv, 0, sizeof(double) * (size_t)g0);
        for (int v = 0; st == PK_OK && v < n; v++) {
            const splat_camera *cam = &cams[views[v]];
            int32_t *vis;
            int64_t nvis, m = 0;
            st = gs_scaffold_visible(s, cam, &vis, &nvis);
            if (st != PK_OK) break;
            for (int64_t j = 0; j < nvis; j++)
                if (vis[j] >= lo && vis[j] < hi) sel[m++] = vis[j];
            free(vis);
            if (m == 0) continue;
            float cp[3];
            centre(cam, cp);
            tensor *to, *tc, *tl;
            st = pk_step_begin(c);
            if (st == PK_OK) st = gs_scaffold_decode_raw(s, c, sel, m, cp, &to, &tc, &tl);
            if (st == PK_OK) st = tensor_download(to, op);
            if (st == PK_OK) st = tensor_download(tc, cov);
            if (st == PK_OK) st = tensor_download(tl, col);
            for (int64_t j = 0; st == PK_OK && j < m; j++) {
                int64_t i = sel[j];
                for (int k = 0; k < K; k++) {
                    int64_t gi = (i - lo) * K + k, r = j * K + k;
                    a.nv[gi] += 1;
                    double ov = op[r];
                    if (!(ov > 0)) continue;
                    a.o[gi] += ov;
                    a.w[gi] += ov;
                    double mean[3], dir[3], len = 0, Y[16];
                    for (int d = 0; d < 3; d++) {
                        mean[d] = anc[i * 3 + d] +
                                  (double)off[i * 3 * K + k * 3 + d] * exp(scal[i * 6 + d]);
                        dir[d] = mean[d] - cp[d];
                        len += dir[d] * dir[d];
                    }
                    len = sqrt(len);
                    for (int d = 0; d < 3; d++)
                        dir[d] = len > 0 ? dir[d] / len : 0;
                    gs_sh_basis(deg, dir, Y);
                    double *A = a.A + gi * ntri;
                    int p = 0;
                    for (int x = 0; x < kc; x++)
                        for (int y = x; y < kc; y++)
                            A[p++] += ov * Y[x] * Y[y];
                    double *R = a.R + gi * kc * 3;
                    for (int x = 0; x < kc; x++)
                        for (int ch = 0; ch < 3; ch++)
                            R[x * 3 + ch] += ov * Y[x] * ((double)col[r * 3 + ch] - 0.5);
                    const float *cv = cov + r * 7;
                    for (int d = 0; d < 3; d++)
                        a.ls[gi * 3 + d] += ov * (scal[i * 6 + 3 + d] -
                                                  log1p(exp(-(double)cv[d]))); /* log sigmoid */
                    double q[4], qn = 0;
                    for (int d = 0; d < 4; d++)
                        q[d] = cv[3 + d], qn += q[d] * q[d];
                    qn = sqrt(qn);
                    double dot = 0;
                    for (int d = 0; d < 4; d++)
                        dot += a.q[gi * 4 + d] * q[d];
                    double sgn = dot < 0 ? -1 : 1;
                    for (int d = 0; d < 4; d++)
                        a.q[gi * 4 + d] += ov * sgn * (qn > 0 ? q[d] / qn : d == 0);
                }
            }
        }
        if (st != PK_OK) break;
        /* the fit of every rendered Gaussian of the chunk */
        int64_t keep = 0;
        for (int64_t gi = 0; gi < g0; gi++)
            keep += a.w[gi] > 0 && a.nv[gi] > 0;
        pk_gaussians b;
        st = gaussians_create(&b, (size_t)keep, deg);
        if (st != PK_OK) break;
        int64_t at = 0;
        for (int64_t gi = 0; gi < g0 && st == PK_OK; gi++) {
            if (!(a.w[gi] > 0 && a.nv[gi] > 0)) continue;
            int64_t i = lo + gi / K, k = gi % K;
            double w = a.w[gi];
            for (int d = 0; d < 3; d++) {
                b.xyz[at * 3 + d] = (float)(anc[i * 3 + d] + (double)off[i * 3 * K + k * 3 + d] *
                                                                 exp(scal[i * 6 + d]));
                b.scale[at * 3 + d] = (float)(a.ls[gi * 3 + d] / w);
            }
            double qn = 0;
            for (int d = 0; d < 4; d++)
                qn += a.q[gi * 4 + d] * a.q[gi * 4 + d];
            qn = sqrt(qn);
            for (int d = 0; d < 4; d++)
                b.rot[at * 4 + d] = (float)(qn > 0 ? a.q[gi * 4 + d] / qn : d == 0);
            double ob = a.o[gi] / a.nv[gi];
            ob = ob < 1e-4 ? 1e-4 : ob > 1 - 1e-4 ? 1 - 1e-4 : ob;
            b.opacity[at] = (float)log(ob / (1 - ob));
            double A[136], R[48];
            memcpy(A, a.A + gi * ntri, sizeof(double) * (size_t)ntri);
            memcpy(R, a.R + gi * kc * 3, sizeof(double) * (size_t)(kc * 3));
            int p = 0;
            for (int x = 0; x < kc; x++)
                for (int y = x; y < kc; y++, p++)
                    if (x == y) A[p] += (x ? ridge : 1e-9) * w;
            if (!chol_solve(kc, A, R)) { /* degenerate: the weighted mean colour */
                for (int ch = 0; ch < 3; ch++) {
                    double m0 = a.R[gi * kc * 3 + ch] / (w * 0.28209479177387814);
                    R[ch] = m0 / 0.28209479177387814;
                    for (int x = 1; x < kc; x++)
                        R[x * 3 + ch] = 0;
                }
            }
            for (int ch = 0; ch < 3; ch++) {
                b.f_dc[at * 3 + ch] = (float)R[ch];
                for (int x = 1; x < kc; x++)
                    b.f_rest[at * 3 * (kc - 1) + ch * (kc - 1) + (x - 1)] = (float)R[x * 3 + ch];
            }
            at++;
        }
        st = gs_gaussians_append(&part, &b);
    }
    pk_set_grad_enabled(c, was);
    free(a.A), free(a.R), free(a.ls), free(a.q), free(a.w), free(a.o), free(a.nv);
    free(sel), free(op), free(cov), free(col);
    if (st != PK_OK) {
        gaussians_free(&part);
        return st;
    }
    if (!part.xyz) {
        PK_TRY(gaussians_create(&part, 0, deg));
    }
    *g = part;
    return PK_OK;
}

/* splat_project.c - projection of one Gaussian (3D covariance, EWA Jacobian, conic, radius,
 * tile rectangle, SH colour) and its exact backward. Follows graphdeco-inria/
 * diff-gaussian-rasterization cuda_rasterizer/forward.cu (preprocessCUDA, computeCov2D,
 * computeCov3D, computeColorFromSH) and backward.cu; see splat.h for where we differ. */
#include "splat_project.h"

#include <math.h>
#include <stddef.h>

/* Real SH basis constants, from diff-gaussian-rasterization cuda_rasterizer/auxiliary.h
 * (SH_C0..SH_C3), same as gaussian-splatting utils/sh_utils.py. */
static const float SH_C0 = 0.28209479177387814f;
static const float SH_C1 = 0.4886025119029199f;
static const float SH_C2[5] = {1.0925484305920792f, -1.0925484305920792f, 0.31539156525252005f,
                               -1.0925484305920792f, 0.5462742152960396f};
static const float SH_C3[7] = {-0.5900435899266435f, 2.890611442640554f,   -0.4570457994644658f,
                               0.3731763325901154f,  -0.4570457994644658f, 1.445305721320277f,
                               -0.5900435899266435f};

pk_status splat_cam_derive(const splat_camera *cam, splat_cam_derived *cd) {
    if (!cam) return pk_error(PK_ERR_INVALID, "splat: camera is NULL");
    if (cam->width < 1 || cam->height < 1)
        return pk_error(PK_ERR_INVALID, "splat: image size %dx%d, expected >= 1x1", cam->width,
                        cam->height);
    if (!(cam->fx > 0.f) || !(cam->fy > 0.f) || !isfinite(cam->fx) || !isfinite(cam->fy))
        return pk_error(PK_ERR_INVALID, "splat: focal lengths (%g, %g) must be > 0",
                        (double)cam->fx, (double)cam->fy);
    if (cam->near < 0.f || !isfinite(cam->near))
        return pk_error(PK_ERR_INVALID, "splat: near plane %g must be >= 0", (double)cam->near);
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++)
            cd->R[i * 3 + j] = cam->world_to_cam[i * 4 + j];
        cd->t[i] = cam->world_to_cam[i * 4 + 3];
    }
    for (int j = 0; j < 3; j++)
        cd->campos[j] = -(cd->R[0 * 3 + j] * cd->t[0] + cd->R[1 * 3 + j] * cd->t[1] +
                          cd->R[2 * 3 + j] * cd->t[2]);
    cd->fx = cam->fx, cd->fy = cam->fy, cd->cx = cam->cx, cd->cy = cam->cy;
    /* 3DGS: tan_fovx = W / (2 fx); limx = 1.3 * tan_fovx */
    cd->limx = 1.3f * (0.5f * (float)cam->width / cam->fx);
    cd->limy = 1.3f * (0.5f * (float)cam->height / cam->fy);
    cd->near = cam->near > 0.f ? cam->near : SPLAT_NEAR_DEFAULT;
    cd->width = cam->width, cd->height = cam->height;
    cd->tiles_x = (cam->width + SPLAT_TILE - 1) / SPLAT_TILE;
    cd->tiles_y = (cam->height + SPLAT_TILE - 1) / SPLAT_TILE;
    return PK_OK;
}

/* Rotation matrix (3, 3) row-major of the unit quaternion (w, x, y, z). */
static void quat_to_rot(const float q[4], float R[9]) {
    float w = q[0], x = q[1], y = q[2], z = q[3];
    R[0] = 1.f - 2.f * (y * y + z * z), R[1] = 2.f * (x * y - w * z), R[2] = 2.f * (x * z + w * y);
    R[3] = 2.f * (x * y + w * z), R[4] = 1.f - 2.f * (x * x + z * z), R[5] = 2.f * (y * z - w * x);
    R[6] = 2.f * (x * z - w * y), R[7] = 2.f * (y * z + w * x), R[8] = 1.f - 2.f * (x * x + y * y);
}

/* SH basis values Y (16) at direction (x, y, z), and when dY is set their partial derivatives
 * dY (16, 3) w.r.t. x, y, z (treated as independent). Terms as computeColorFromSH. */
static void sh_basis(int deg, float x, float y, float z, float *Y, float *dY) {
    Y[0] = SH_C0;
    if (dY)
        for (int i = 0; i < 48; i++)
            dY[i] = 0.f;
    if (deg < 1) return;
    Y[1] = -SH_C1 * y, Y[2] = SH_C1 * z, Y[3] = -SH_C1 * x;
    if (dY) dY[1 * 3 + 1] = -SH_C1, dY[2 * 3 + 2] = SH_C1, dY[3 * 3 + 0] = -SH_C1;
    if (deg < 2) return;
    float xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
    Y[4] = SH_C2[0] * xy;
    Y[5] = SH_C2[1] * yz;
    Y[6] = SH_C2[2] * (2.f * zz - xx - yy);
    Y[7] = SH_C2[3] * xz;
    Y[8] = SH_C2[4] * (xx - yy);
    if (dY) {
        dY[12] = SH_C2[0] * y, dY[13] = SH_C2[0] * x;
        dY[16] = SH_C2[1] * z, dY[17] = SH_C2[1] * y;
        dY[18] = -2.f * SH_C2[2] * x, dY[19] = -2.f * SH_C2[2] * y, dY[20] = 4.f * SH_C2[2] * z;
        dY[21] = SH_C2[3] * z, dY[23] = SH_C2[3] * x;
        dY[24] = 2.f * SH_C2[4] * x, dY[25] = -2.f * SH_C2[4] * y;
    }
    if (deg < 3) return;
    Y[9] = SH_C3[0] * y * (3.f * xx - yy);
    Y[10] = SH_C3[1] * xy * z;
    Y[11] = SH_C3[2] * y * (4.f * zz - xx - yy);
    Y[12] = SH_C3[3] * z * (2.f * zz - 3.f * xx - 3.f * yy);
    Y[13] = SH_C3[4] * x * (4.f * zz - xx - yy);
    Y[14] = SH_C3[5] * z * (xx - yy);
    Y[15] = SH_C3[6] * x * (xx - 3.f * yy);
    if (dY) {
        float *d = dY;
        d[27] = SH_C3[0] * 6.f * xy, d[28] = SH_C3[0] * 3.f * (xx - yy);
        d[30] = SH_C3[1] * yz, d[31] = SH_C3[1] * xz, d[32] = SH_C3[1] * xy;
        d[33] = -2.f * SH_C3[2] * xy, d[34] = SH_C3[2] * (4.f * zz - xx - 3.f * yy),
        d[35] = 8.f * SH_C3[2] * yz;
        d[36] = -6.f * SH_C3[3] * xz, d[37] = -6.f * SH_C3[3] * yz,
        d[38] = SH_C3[3] * (6.f * zz - 3.f * xx - 3.f * yy);
        d[39] = SH_C3[4] * (4.f * zz - 3.f * xx - yy), d[40] = -2.f * SH_C3[4] * xy,
        d[41] = 8.f * SH_C3[4] * xz;
        d[42] = 2.f * SH_C3[5] * xz, d[43] = -2.f * SH_C3[5] * yz, d[44] = SH_C3[5] * (xx - yy);
        d[45] = SH_C3[6] * 3.f * (xx - yy), d[46] = -6.f * SH_C3[6] * xy;
    }
}

/* Everything the forward computes before the conic, kept for the backward. */
typedef struct proj_tmp {
    float pv[3];        // view-space mean
    float s[3], q[4];   // scales, normalised quaternion
    float qnorm;        // |q| before normalisation
    float Rq[9];        // rotation of q
    float M[9];         // R S (3, 3)
    float Sc[9];        // view-space covariance W Sigma W^T (3, 3)
    float u, v;         // x/z, y/z before the clamp
    float uc, vc;       // after the clamp
    float J[6];         // (2, 3) EWA Jacobian
    float A, B, C, det; // dilated 2D covariance [[A, B], [B, C]]
    float dir[3], dlen; // view direction (unit) and |mean - campos|
    int clamp_rgb[3];   // SH colour clamped at 0
} proj_tmp;

/* The forward math of one Gaussian up to the 2D covariance; returns 0 when culled. */
static int project_core(const splat_cam_derived *cd, const splat_scene_view *s, int g,
                        proj_tmp *t) {
    const float *m = s->means + 3 * (int64_t)g;
    for (int i = 0; i < 3; i++)
        t->pv[i] =
            cd->R[i * 3] * m[0] + cd->R[i * 3 + 1] * m[1] + cd->R[i * 3 + 2] * m[2] + cd->t[i];
    if (!(t->pv[2] > cd->near)) return 0;
    const float *qi = s->quats + 4 * (int64_t)g;
    float qn = sqrtf(qi[0] * qi[0] + qi[1] * qi[1] + qi[2] * qi[2] + qi[3] * qi[3]);
    if (!(qn > 0.f) || !isfinite(qn)) return 0;
    t->qnorm = qn;
    for (int i = 0; i < 4; i++)
        t->q[i] = qi[i] / qn;
    quat_to_rot(t->q, t->Rq);
    for (int i = 0; i < 3; i++)
        t->s[i] = expf(s->log_scales[3 * (int64_t)g + i]);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            t->M[i * 3 + j] = t->Rq[i * 3 + j] * t->s[j];
    /* Sc = W Sigma W^T = (W M)(W M)^T */
    float WM[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            WM[i * 3 + j] = cd->R[i * 3] * t->M[j] + cd->R[i * 3 + 1] * t->M[3 + j] +
                            cd->R[i * 3 + 2] * t->M[6 + j];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            t->Sc[i * 3 + j] = WM[i * 3] * WM[j * 3] + WM[i * 3 + 1] * WM[j * 3 + 1] +
                               WM[i * 3 + 2] * WM[j * 3 + 2];
    float z = t->pv[2];
    t->u = t->pv[0] / z, t->v = t->pv[1] / z;
    t->uc = fminf(cd->limx, fmaxf(-cd->limx, t->u));
    t->vc = fminf(cd->limy, fmaxf(-cd->limy, t->v));
    /* J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]] with tx = uc z */
    t->J[0] = cd->fx / z, t->J[1] = 0.f, t->J[2] = -cd->fx * t->uc / z;
    t->J[3] = 0.f, t->J[4] = cd->fy / z, t->J[5] = -cd->fy * t->vc / z;
    /* cov2D = J Sc J^T = P P^T with P = J W M (2, 3). Its entries are dot products of P's
     * rows and, by the Lagrange identity, det(P P^T) = |P0 x P1|^2: no cancellation, so
     * needle-like Gaussians keep an accurate determinant (3DGS's float A C - B^2 loses it) */
    float P[6];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            P[i * 3 + j] =
                t->J[i * 3] * WM[j] + t->J[i * 3 + 1] * WM[3 + j] + t->J[i * 3 + 2] * WM[6 + j];
    float c00 = P[0] * P[0] + P[1] * P[1] + P[2] * P[2];
    float c01 = P[0] * P[3] + P[1] * P[4] + P[2] * P[5];
    float c11 = P[3] * P[3] + P[4] * P[4] + P[5] * P[5];
    float x0 = P[1] * P[5] - P[2] * P[4], x1 = P[2] * P[3] - P[0] * P[5];
    float x2 = P[0] * P[4] - P[1] * P[3];
    t->A = c00 + 0.3f, t->B = c01, t->C = c11 + 0.3f; /* 3DGS low-pass dilation */
    /* = A C - B^2 */
    t->det = (x0 * x0 + x1 * x1 + x2 * x2) + 0.3f * (c00 + c11) + 0.09f;
    /* 3DGS drops det == 0; here det >= 0.09 unless it overflowed or is NaN */
    if (!(t->det > 0.f) || !isfinite(t->det)) return 0;
    return 1;
}

int splat_project_one(const splat_cam_derived *cd, const splat_scene_view *s, int g,
                      splat_proj *p) {
    proj_tmp t;
    p->radius = 0;
    p->rect[0] = p->rect[1] = p->rect[2] = p->rect[3] = 0;
    if (!project_core(cd, s, g, &t)) return 0;
    float inv_det = 1.f / t.det;
    p->conic[0] = t.C * inv_det, p->conic[1] = -t.B * inv_det, p->conic[2] = t.A * inv_det;
    float mid = 0.5f * (t.A + t.C);
    float lambda1 = mid + sqrtf(fmaxf(0.1f, mid * mid - t.det));
    float rf = ceilf(3.f * sqrtf(lambda1));
    if (!(rf < 1e8f)) rf = 1e8f; /* keep huge (or NaN) splats representable as int */
    p->xy[0] = cd->fx * t.u + cd->cx;
    p->xy[1] = cd->fy * t.v + cd->cy;
    /* getRect() in 3DGS pixel coordinates (centres at integers, hence -0.5), clamped in
     * float first so that far-away means never overflow the int conversion */
    float px = p->xy[0] - 0.5f, py = p->xy[1] - 0.5f, T = (float)SPLAT_TILE;
    float gx = (float)cd->tiles_x, gy = (float)cd->tiles_y;
    float fx0 = fminf(gx, fmaxf(0.f, (px - rf) / T));
    float fy0 = fminf(gy, fmaxf(0.f, (py - rf) / T));
    float fx1 = fminf(gx, fmaxf(0.f, (px + rf + T - 1.f) / T));
    float fy1 = fminf(gy, fmaxf(0.f, (py + rf + T - 1.f) / T));
    if (!(fx0 == fx0 && fy0 == fy0 && fx1 == fx1 && fy1 == fy1)) return 0; /* NaN mean */
    p->rect[0] = (int)fx0, p->rect[1] = (int)fx1, p->rect[2] = (int)fy0, p->rect[3] = (int)fy1;
    if ((p->rect[1] - p->rect[0]) * (p->rect[3] - p->rect[2]) == 0) return 0;
    p->radius = (int)rf;
    p->depth = t.pv[2];
    p->opacity = 1.f / (1.f + expf(-s->opacity_logits[g]));
    if (s->sh) {
        int K = (s->sh_degree + 1) * (s->sh_degree + 1);
        const float *m = s->means + 3 * (int64_t)g;
        float d[3] = {m[0] - cd->campos[0], m[1] - cd->campos[1], m[2] - cd->campos[2]};
        float len = sqrtf(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
        float Y[16];
        sh_basis(s->sh_degree, d[0] / len, d[1] / len, d[2] / len, Y, NULL);
        const float *sh = s->sh + (int64_t)g * K * 3;
        for (int c = 0; c < 3; c++) {
            float acc = 0.f;
            for (int k = 0; k < K; k++)
                acc += Y[k] * sh[k * 3 + c];
            acc += 0.5f;
            p->rgb[c] = acc < 0.f ? 0.f : acc;
        }
    } else {
        for (int c = 0; c < 3; c++)
            p->rgb[c] = s->colors[3 * (int64_t)g + c];
    }
    return 1;
}

void splat_project_back_one(const splat_cam_derived *cd, const splat_scene_view *s, int g,
                            const float *d, const splat_grads *grads) {
    proj_tmp t;
    if (!project_core(cd, s, g, &t)) return;
    const float *m = s->means + 3 * (int64_t)g;
    float gpv[3] = {0.f, 0.f, 0.f}; /* d loss / d view-space mean */
    float gm[3] = {0.f, 0.f, 0.f};  /* d loss / d world mean (direct terms) */
    float z = t.pv[2], iz = 1.f / z, iz2 = iz * iz;

    /* conic = inverse([[A, B], [B, C]]): d conic / d (A, B, C) */
    float ga = d[2], gb = d[3], gc = d[4];
    float A = t.A, B = t.B, C = t.C, id2 = 1.f / (t.det * t.det);
    float gA = (-C * C * ga + B * C * gb - B * B * gc) * id2;
    float gB = (2.f * B * C * ga - (A * C + B * B) * gb + 2.f * A * B * gc) * id2;
    float gC = (-B * B * ga + A * B * gb - A * A * gc) * id2;
    /* cov2D = J Sc J^T: G is the symmetric gradient of cov2D (off-diagonal split in two) */
    float G[4] = {gA, 0.5f * gB, 0.5f * gB, gC};
    float GJ[6], gSc[9], gJ[6];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            GJ[i * 3 + j] = G[i * 2] * t.J[j] + G[i * 2 + 1] * t.J[3 + j];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            gSc[i * 3 + j] = t.J[i] * GJ[j] + t.J[3 + i] * GJ[3 + j];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            gJ[i * 3 + j] = 2.f * (GJ[i * 3] * t.Sc[j] + GJ[i * 3 + 1] * t.Sc[3 + j] +
                                   GJ[i * 3 + 2] * t.Sc[6 + j]);
    /* J entries as functions of the view-space mean; a clamped coordinate has no gradient
     * and J02 = -fx uc / z then depends on z only through 1/z */
    int clx = t.u != t.uc, cly = t.v != t.vc;
    gpv[2] += gJ[0] * (-cd->fx * iz2) + gJ[4] * (-cd->fy * iz2);
    if (!clx) {
        gpv[0] += gJ[2] * (-cd->fx * iz2);
        gpv[2] += gJ[2] * (2.f * cd->fx * t.uc * iz2);
    } else {
        gpv[2] += gJ[2] * (cd->fx * t.uc * iz2);
    }
    if (!cly) {
        gpv[1] += gJ[5] * (-cd->fy * iz2);
        gpv[2] += gJ[5] * (2.f * cd->fy * t.vc * iz2);
    } else {
        gpv[2] += gJ[5] * (cd->fy * t.vc * iz2);
    }
    /* mean2D = (fx x/z + cx, fy y/z + cy) with the unclamped x/z */
    gpv[0] += d[0] * cd->fx * iz;
    gpv[1] += d[1] * cd->fy * iz;
    gpv[2] += -(d[0] * cd->fx * t.u + d[1] * cd->fy * t.v) * iz;
    gpv[2] += d[9]; /* depth */
    for (int j = 0; j < 3; j++)
        gm[j] += cd->R[j] * gpv[0] + cd->R[3 + j] * gpv[1] + cd->R[6 + j] * gpv[2];

    /* Sc = W Sigma W^T -> gSig = W^T gSc W; Sigma = M M^T -> gM = 2 gSig M */
    float tmp[9], gSig[9], gM[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            tmp[i * 3 + j] =
                cd->R[i] * gSc[j] + cd->R[3 + i] * gSc[3 + j] + cd->R[6 + i] * gSc[6 + j];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            gSig[i * 3 + j] = tmp[i * 3] * cd->R[j] + tmp[i * 3 + 1] * cd->R[3 + j] +
                              tmp[i * 3 + 2] * cd->R[6 + j];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            gM[i * 3 + j] = (gSig[i * 3] + gSig[i]) * t.M[j] +
                            (gSig[i * 3 + 1] + gSig[3 + i]) * t.M[3 + j] +
                            (gSig[i * 3 + 2] + gSig[6 + i]) * t.M[6 + j];
    if (grads->log_scales) {
        float *gl = grads->log_scales + 3 * (int64_t)g;
        for (int j = 0; j < 3; j++)
            gl[j] += t.s[j] * (gM[j] * t.Rq[j] + gM[3 + j] * t.Rq[3 + j] + gM[6 + j] * t.Rq[6 + j]);
    }
    if (grads->quats) {
        float gR[9];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                gR[i * 3 + j] = gM[i * 3 + j] * t.s[j];
        float w = t.q[0], x = t.q[1], y = t.q[2], zq = t.q[3];
        float gq[4];
        gq[0] = 2.f * (-zq * gR[1] + y * gR[2] + zq * gR[3] - x * gR[5] - y * gR[6] + x * gR[7]);
        gq[1] = 2.f * (y * gR[1] + zq * gR[2] + y * gR[3] - 2.f * x * gR[4] - w * gR[5] +
                       zq * gR[6] + w * gR[7] - 2.f * x * gR[8]);
        gq[2] = 2.f * (-2.f * y * gR[0] + x * gR[1] + w * gR[2] + x * gR[3] + zq * gR[5] -
                       w * gR[6] + zq * gR[7] - 2.f * y * gR[8]);
        gq[3] = 2.f * (-2.f * zq * gR[0] - w * gR[1] + x * gR[2] + w * gR[3] - 2.f * zq * gR[4] +
                       y * gR[5] + x * gR[6] + y * gR[7]);
        /* through q / |q| */
        float dot = t.q[0] * gq[0] + t.q[1] * gq[1] + t.q[2] * gq[2] + t.q[3] * gq[3];
        float *go = grads->quats + 4 * (int64_t)g;
        for (int i = 0; i < 4; i++)
            go[i] += (gq[i] - t.q[i] * dot) / t.qnorm;
    }
    if (grads->opacity_logits) {
        float o = 1.f / (1.f + expf(-s->opacity_logits[g]));
        grads->opacity_logits[g] += d[5] * o * (1.f - o);
    }
    if (s->sh) {
        int K = (s->sh_degree + 1) * (s->sh_degree + 1);
        float dv[3] = {m[0] - cd->campos[0], m[1] - cd->campos[1], m[2] - cd->campos[2]};
        float len = sqrtf(dv[0] * dv[0] + dv[1] * dv[1] + dv[2] * dv[2]);
        float dir[3] = {dv[0] / len, dv[1] / len, dv[2] / len};
        float Y[16], dY[48];
        sh_basis(s->sh_degree, dir[0], dir[1], dir[2], Y, dY);
        const float *sh = s->sh + (int64_t)g * K * 3;
        float gcol[3];
        for (int c = 0; c < 3; c++) {
            float acc = 0.f;
            for (int k = 0; k < K; k++)
                acc += Y[k] * sh[k * 3 + c];
            acc += 0.5f;
            gcol[c] = acc < 0.f ? 0.f : d[6 + c];
        }
        if (grads->sh) {
            float *gs = grads->sh + (int64_t)g * K * 3;
            for (int k = 0; k < K; k++)
                for (int c = 0; c < 3; c++)
                    gs[k * 3 + c] += Y[k] * gcol[c];
        }
        float gdir[3] = {0.f, 0.f, 0.f};
        for (int k = 1; k < K; k++) {
            float w = sh[k * 3] * gcol[0] + sh[k * 3 + 1] * gcol[1] + sh[k * 3 + 2] * gcol[2];
            for (int j = 0; j < 3; j++)
                gdir[j] += w * dY[k * 3 + j];
        }
        float dd = dir[0] * gdir[0] + dir[1] * gdir[1] + dir[2] * gdir[2];
        for (int j = 0; j < 3; j++)
            gm[j] += (gdir[j] - dir[j] * dd) / len;
    } else if (grads->colors) {
        for (int c = 0; c < 3; c++)
            grads->colors[3 * (int64_t)g + c] += d[6 + c];
    }
    if (grads->means)
        for (int j = 0; j < 3; j++)
            grads->means[3 * (int64_t)g + j] += gm[j];
    if (grads->means2d) {
        grads->means2d[2 * (int64_t)g] += d[0];
        grads->means2d[2 * (int64_t)g + 1] += d[1];
    }
}

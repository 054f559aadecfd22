// splat_common.glsl - per-Gaussian projection math shared by project.comp and
// project_back.comp: a line-by-line port of framework/splat/splat_project.c (see there and
// framework/splat/splat.h for conventions; the CPU code is the reference semantics).

// params buffer layout (SPLAT_PARAMS_FLOATS floats)
#define P_R 0
#define P_T 9
#define P_CAMPOS 12
#define P_FX 15
#define P_FY 16
#define P_CX 17
#define P_CY 18
#define P_LIMX 19
#define P_LIMY 20
#define P_NEAR 21
#define P_BG 22

// proj layout (SPLAT_PROJ_STRIDE floats per Gaussian)
#define PJ_X 0
#define PJ_Y 1
#define PJ_CONIC 2
#define PJ_OPACITY 5
#define PJ_RGB 6
#define PJ_DEPTH 9
#define PJ_RADIUS 10
#define PJ_RECT 11

struct Cam {
    float R[9];
    float t[3];
    float campos[3];
    float fx, fy, cx, cy, limx, limy, near;
};

// diff-gaussian-rasterization cuda_rasterizer/auxiliary.h
const float SH_C0 = 0.28209479177387814;
const float SH_C1 = 0.4886025119029199;
const float SH_C2[5] = float[5](1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
                                -1.0925484305920792, 0.5462742152960396);
const float SH_C3[7] = float[7](-0.5900435899266435, 2.890611442640554, -0.4570457994644658,
                                0.3731763325901154, -0.4570457994644658, 1.445305721320277,
                                -0.5900435899266435);

// SH basis Y (16) at unit direction d and its partials dY (16 x 3, row k = dY_k / d(x,y,z))
void sh_basis(uint deg, vec3 d, out float Y[16], out vec3 dY[16]) {
    for (int k = 0; k < 16; k++) {
        Y[k] = 0.0;
        dY[k] = vec3(0.0);
    }
    float x = d.x, y = d.y, z = d.z;
    Y[0] = SH_C0;
    if (deg < 1u) return;
    Y[1] = -SH_C1 * y;
    Y[2] = SH_C1 * z;
    Y[3] = -SH_C1 * x;
    dY[1] = vec3(0.0, -SH_C1, 0.0);
    dY[2] = vec3(0.0, 0.0, SH_C1);
    dY[3] = vec3(-SH_C1, 0.0, 0.0);
    if (deg < 2u) return;
    float xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
    Y[4] = SH_C2[0] * xy;
    Y[5] = SH_C2[1] * yz;
    Y[6] = SH_C2[2] * (2.0 * zz - xx - yy);
    Y[7] = SH_C2[3] * xz;
    Y[8] = SH_C2[4] * (xx - yy);
    dY[4] = SH_C2[0] * vec3(y, x, 0.0);
    dY[5] = SH_C2[1] * vec3(0.0, z, y);
    dY[6] = SH_C2[2] * vec3(-2.0 * x, -2.0 * y, 4.0 * z);
    dY[7] = SH_C2[3] * vec3(z, 0.0, x);
    dY[8] = SH_C2[4] * vec3(2.0 * x, -2.0 * y, 0.0);
    if (deg < 3u) return;
    Y[9] = SH_C3[0] * y * (3.0 * xx - yy);
    Y[10] = SH_C3[1] * xy * z;
    Y[11] = SH_C3[2] * y * (4.0 * zz - xx - yy);
    Y[12] = SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy);
    Y[13] = SH_C3[4] * x * (4.0 * zz - xx - yy);
    Y[14] = SH_C3[5] * z * (xx - yy);
    Y[15] = SH_C3[6] * x * (xx - 3.0 * yy);
    dY[9] = SH_C3[0] * vec3(6.0 * xy, 3.0 * (xx - yy), 0.0);
    dY[10] = SH_C3[1] * vec3(yz, xz, xy);
    dY[11] = SH_C3[2] * vec3(-2.0 * xy, 4.0 * zz - xx - 3.0 * yy, 8.0 * yz);
    dY[12] = SH_C3[3] * vec3(-6.0 * xz, -6.0 * yz, 6.0 * zz - 3.0 * xx - 3.0 * yy);
    dY[13] = SH_C3[4] * vec3(4.0 * zz - 3.0 * xx - yy, -2.0 * xy, 8.0 * xz);
    dY[14] = SH_C3[5] * vec3(2.0 * xz, -2.0 * yz, xx - yy);
    dY[15] = SH_C3[6] * vec3(3.0 * (xx - yy), -6.0 * xy, 0.0);
}

// Intermediates of the projection, kept for the backward.
struct ProjTmp {
    vec3 pv;      // view-space mean
    vec3 s;       // scales
    vec4 q;       // normalised quaternion (w, x, y, z)
    float qnorm;
    float Rq[9];  // rotation of q, row-major
    float M[9];   // R S
    float Sc[9];  // view-space covariance
    float u, v, uc, vc;
    float J[6];   // (2, 3) EWA Jacobian
    float A, B, C, det;
};

// The forward up to the dilated 2D covariance; false when culled (as project_core in C).
bool project_core(Cam cam, vec3 m, vec3 log_s, vec4 qi, out ProjTmp t) {
    for (int i = 0; i < 3; i++)
        t.pv[i] = cam.R[i * 3] * m.x + cam.R[i * 3 + 1] * m.y + cam.R[i * 3 + 2] * m.z + cam.t[i];
    if (!(t.pv.z > cam.near)) return false;
    float qn = sqrt(dot(qi, qi));
    if (!(qn > 0.0) || isinf(qn)) return false;
    t.qnorm = qn;
    t.q = qi / qn;
    float w = t.q.x, x = t.q.y, y = t.q.z, z = t.q.w;
    t.Rq[0] = 1.0 - 2.0 * (y * y + z * z);
    t.Rq[1] = 2.0 * (x * y - w * z);
    t.Rq[2] = 2.0 * (x * z + w * y);
    t.Rq[3] = 2.0 * (x * y + w * z);
    t.Rq[4] = 1.0 - 2.0 * (x * x + z * z);
    t.Rq[5] = 2.0 * (y * z - w * x);
    t.Rq[6] = 2.0 * (x * z - w * y);
    t.Rq[7] = 2.0 * (y * z + w * x);
    t.Rq[8] = 1.0 - 2.0 * (x * x + y * y);
    t.s = exp(log_s);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) t.M[i * 3 + j] = t.Rq[i * 3 + j] * t.s[j];
    float WM[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            WM[i * 3 + j] = cam.R[i * 3] * t.M[j] + cam.R[i * 3 + 1] * t.M[3 + j] +
                            cam.R[i * 3 + 2] * t.M[6 + j];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            t.Sc[i * 3 + j] = WM[i * 3] * WM[j * 3] + WM[i * 3 + 1] * WM[j * 3 + 1] +
                              WM[i * 3 + 2] * WM[j * 3 + 2];
    float zz = t.pv.z;
    t.u = t.pv.x / zz;
    t.v = t.pv.y / zz;
    t.uc = min(cam.limx, max(-cam.limx, t.u));
    t.vc = min(cam.limy, max(-cam.limy, t.v));
    t.J[0] = cam.fx / zz;
    t.J[1] = 0.0;
    t.J[2] = -cam.fx * t.uc / zz;
    t.J[3] = 0.0;
    t.J[4] = cam.fy / zz;
    t.J[5] = -cam.fy * t.vc / zz;
    float P[6];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            P[i * 3 + j] = t.J[i * 3] * WM[j] + t.J[i * 3 + 1] * WM[3 + j] +
                           t.J[i * 3 + 2] * WM[6 + j];
    float c00 = P[0] * P[0] + P[1] * P[1] + P[2] * P[2];
    float c01 = P[0] * P[3] + P[1] * P[4] + P[2] * P[5];
    float c11 = P[3] * P[3] + P[4] * P[4] + P[5] * P[5];
    vec3 cr = cross(vec3(P[0], P[1], P[2]), vec3(P[3], P[4], P[5]));
    t.A = c00 + 0.3;
    t.B = c01;
    t.C = c11 + 0.3;
    // = A C - B^2 by the Lagrange identity, without cancellation
    t.det = dot(cr, cr) + 0.3 * (c00 + c11) + 0.09;
    if (!(t.det > 0.0) || isinf(t.det)) return false;
    return true;
}

Cam load_cam_from(float p[SPLAT_PARAMS_FLOATS]) {
    Cam c;
    for (int i = 0; i < 9; i++) c.R[i] = p[P_R + i];
    for (int i = 0; i < 3; i++) c.t[i] = p[P_T + i];
    for (int i = 0; i < 3; i++) c.campos[i] = p[P_CAMPOS + i];
    c.fx = p[P_FX];
    c.fy = p[P_FY];
    c.cx = p[P_CX];
    c.cy = p[P_CY];
    c.limx = p[P_LIMX];
    c.limy = p[P_LIMY];
    c.near = p[P_NEAR];
    return c;
}

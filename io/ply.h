/* ply.h - PLY point clouds and 3D Gaussian splats: read binary little-endian and ASCII PLY
 * (vertex element first), write the standard 3DGS layout every viewer opens. */
#ifndef POLYAK_PLY_H
#define POLYAK_PLY_H
#include "status.h"

#include <stddef.h>
#include <stdint.h>

/* The vertex element of a PLY file, every property converted to float. */
typedef struct ply_table {
    size_t n;      /* vertex count */
    int nprops;    /* properties per vertex */
    char **names;  /* (nprops) property names */
    float *values; /* (n, nprops) */
    int binary;    /* 1 binary_little_endian, 0 ascii */
} ply_table;

/* 3D Gaussians in the 3DGS file layout (raw parameters, as stored). */
typedef struct pk_gaussians {
    size_t n;
    int sh_degree;  /* 0..3; f_rest holds 3*((d+1)^2-1) values per Gaussian */
    float *xyz;     /* (n, 3) */
    float *f_dc;    /* (n, 3) SH degree-0 coefficients, RGB */
    float *f_rest;  /* (n, 3*(K-1)) channel-major: R coeffs 1..K-1, then G, then B */
    float *opacity; /* (n) logit */
    float *scale;   /* (n, 3) log */
    float *rot;     /* (n, 4) quaternion w, x, y, z */
} pk_gaussians;

/* Parses a PLY image in memory (vertex element only); `name` is for messages. */
pk_status ply_parse(const char *name, const uint8_t *buf, size_t len, ply_table *t);
/* Reads a PLY file's vertex element. */
pk_status ply_read(const char *path, ply_table *t);
/* Frees a table (accepts NULL). */
void ply_table_free(ply_table *t);
/* Index of a property by name, -1 when absent. */
int ply_find(const ply_table *t, const char *name);

/* Allocates n Gaussians of SH degree d (values zeroed). */
pk_status gaussians_create(pk_gaussians *g, size_t n, int sh_degree);
/* Frees Gaussians (accepts NULL). */
void gaussians_free(pk_gaussians *g);
/* Extracts 3DGS Gaussians from a table (any SH degree; values must be finite). */
pk_status ply_table_to_gaussians(const char *name, const ply_table *t, pk_gaussians *g);
/* Reads a 3DGS PLY file. */
pk_status ply_read_3dgs(const char *path, pk_gaussians *g);
/* Writes the standard 3DGS binary PLY (normals written as 0), atomically. */
pk_status ply_write_3dgs(const char *path, const pk_gaussians *g);
/* Extracts x,y,z (+ red,green,blue when present, else 255) points from a table. */
pk_status ply_table_to_points(const char *name, const ply_table *t, float **xyz, uint8_t **rgb);

#endif

/* image_batch.h - push constants of nn/image_batch.comp: an augmented batch x, t (n, C, H, W)
 * and labels y (n) gathered from a resident data set, images (N, H, W, C) u8 and labels (N)
 * i32, by plan rows (idx, ox | oy << 8 | flip << 16). Bindings: 0 images (u8 read as packed
 * words), 1 labels, 2 plan, 3 x, 4 t, 5 y. Offsets are elements of each binding's type (bytes
 * for the images). */
#ifndef POLYAK_NN_IMAGE_BATCH_H
#define POLYAK_NN_IMAGE_BATCH_H
#include "common/pc.h"
PK_PC_BEGIN(pc_image_batch)
PC_U32 off_img;
PC_U32 off_lab;
PC_U32 off_plan;
PC_U32 off_x;
PC_U32 off_t;
PC_U32 off_y;
PC_U32 n;
PC_U32 first;
PC_U32 images;
PC_U32 c;
PC_U32 h;
PC_U32 w;
PC_U32 pad;
PC_U32 reflect;
PC_F32 mean0;
PC_F32 mean1;
PC_F32 mean2;
PC_F32 std0;
PC_F32 std1;
PC_F32 std2;
PK_PC_END(pc_image_batch)
#endif

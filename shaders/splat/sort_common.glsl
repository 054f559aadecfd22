// sort_common.glsl - the digit of the radix sort shared by sort_hist.comp and
// sort_scatter.comp: 8 bits of the 64-bit key (hi = tile, lo = depth bits) at pc.shift.
uint sort_digit(uint hi, uint lo, uint shift) {
    return shift < 32u ? (lo >> shift) & 255u : (hi >> (shift - 32u)) & 255u;
}

/* tensor_json — inputs[0].data of an inference request read straight into
 * floats; see tensor_json.h.
 *
 * Three parts: a JSON number literal to float (Eisel-Lemire, strtod for
 * the rest), the strict reader of an array of numbers, and the skimmer that
 * finds inputs[0].data in the body. The skimmer only follows the grammar
 * as far as it needs and matches brackets over everything else: whatever
 * it gets wrong on malformed text, Jansson refuses when it parses the rest
 * of the document, and the body is then parsed whole for the error. */
#include "api/tensor_json.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- a number literal --------------------------------------------------- */

/* The decimal exponents the table covers; 19 digits times 10^q for q in
 * this range stay far from the double range's ends, so the conversion
 * below never meets an overflow or a subnormal. */
#define POW10_MIN (-64)
#define POW10_MAX 63

/* 10^q as a 128-bit mantissa {high, low}, normalised so that the top bit
 * is set and rounded down, for q from POW10_MIN. Generated exactly with
 * Python's fractions:
 *   v = Fraction(10)**q; e: 2**127 <= v*2**e < 2**128; m = floor(v*2**e) */
static const uint64_t pow10_128[POW10_MAX - POW10_MIN + 1][2] = {
    {0xA87FEA27A539E9A5ULL, 0x3F2398D747B36224ULL}, /* 1e-64 */
    {0xD29FE4B18E88640EULL, 0x8EEC7F0D19A03AADULL}, /* 1e-63 */
    {0x83A3EEEEF9153E89ULL, 0x1953CF68300424ACULL}, /* 1e-62 */
    {0xA48CEAAAB75A8E2BULL, 0x5FA8C3423C052DD7ULL}, /* 1e-61 */
    {0xCDB02555653131B6ULL, 0x3792F412CB06794DULL}, /* 1e-60 */
    {0x808E17555F3EBF11ULL, 0xE2BBD88BBEE40BD0ULL}, /* 1e-59 */
    {0xA0B19D2AB70E6ED6ULL, 0x5B6ACEAEAE9D0EC4ULL}, /* 1e-58 */
    {0xC8DE047564D20A8BULL, 0xF245825A5A445275ULL}, /* 1e-57 */
    {0xFB158592BE068D2EULL, 0xEED6E2F0F0D56712ULL}, /* 1e-56 */
    {0x9CED737BB6C4183DULL, 0x55464DD69685606BULL}, /* 1e-55 */
    {0xC428D05AA4751E4CULL, 0xAA97E14C3C26B886ULL}, /* 1e-54 */
    {0xF53304714D9265DFULL, 0xD53DD99F4B3066A8ULL}, /* 1e-53 */
    {0x993FE2C6D07B7FABULL, 0xE546A8038EFE4029ULL}, /* 1e-52 */
    {0xBF8FDB78849A5F96ULL, 0xDE98520472BDD033ULL}, /* 1e-51 */
    {0xEF73D256A5C0F77CULL, 0x963E66858F6D4440ULL}, /* 1e-50 */
    {0x95A8637627989AADULL, 0xDDE7001379A44AA8ULL}, /* 1e-49 */
    {0xBB127C53B17EC159ULL, 0x5560C018580D5D52ULL}, /* 1e-48 */
    {0xE9D71B689DDE71AFULL, 0xAAB8F01E6E10B4A6ULL}, /* 1e-47 */
    {0x9226712162AB070DULL, 0xCAB3961304CA70E8ULL}, /* 1e-46 */
    {0xB6B00D69BB55C8D1ULL, 0x3D607B97C5FD0D22ULL}, /* 1e-45 */
    {0xE45C10C42A2B3B05ULL, 0x8CB89A7DB77C506AULL}, /* 1e-44 */
    {0x8EB98A7A9A5B04E3ULL, 0x77F3608E92ADB242ULL}, /* 1e-43 */
    {0xB267ED1940F1C61CULL, 0x55F038B237591ED3ULL}, /* 1e-42 */
    {0xDF01E85F912E37A3ULL, 0x6B6C46DEC52F6688ULL}, /* 1e-41 */
    {0x8B61313BBABCE2C6ULL, 0x2323AC4B3B3DA015ULL}, /* 1e-40 */
    {0xAE397D8AA96C1B77ULL, 0xABEC975E0A0D081AULL}, /* 1e-39 */
    {0xD9C7DCED53C72255ULL, 0x96E7BD358C904A21ULL}, /* 1e-38 */
    {0x881CEA14545C7575ULL, 0x7E50D64177DA2E54ULL}, /* 1e-37 */
    {0xAA242499697392D2ULL, 0xDDE50BD1D5D0B9E9ULL}, /* 1e-36 */
    {0xD4AD2DBFC3D07787ULL, 0x955E4EC64B44E864ULL}, /* 1e-35 */
    {0x84EC3C97DA624AB4ULL, 0xBD5AF13BEF0B113EULL}, /* 1e-34 */
    {0xA6274BBDD0FADD61ULL, 0xECB1AD8AEACDD58EULL}, /* 1e-33 */
    {0xCFB11EAD453994BAULL, 0x67DE18EDA5814AF2ULL}, /* 1e-32 */
    {0x81CEB32C4B43FCF4ULL, 0x80EACF948770CED7ULL}, /* 1e-31 */
    {0xA2425FF75E14FC31ULL, 0xA1258379A94D028DULL}, /* 1e-30 */
    {0xCAD2F7F5359A3B3EULL, 0x096EE45813A04330ULL}, /* 1e-29 */
    {0xFD87B5F28300CA0DULL, 0x8BCA9D6E188853FCULL}, /* 1e-28 */
    {0x9E74D1B791E07E48ULL, 0x775EA264CF55347DULL}, /* 1e-27 */
    {0xC612062576589DDAULL, 0x95364AFE032A819DULL}, /* 1e-26 */
    {0xF79687AED3EEC551ULL, 0x3A83DDBD83F52204ULL}, /* 1e-25 */
    {0x9ABE14CD44753B52ULL, 0xC4926A9672793542ULL}, /* 1e-24 */
    {0xC16D9A0095928A27ULL, 0x75B7053C0F178293ULL}, /* 1e-23 */
    {0xF1C90080BAF72CB1ULL, 0x5324C68B12DD6338ULL}, /* 1e-22 */
    {0x971DA05074DA7BEEULL, 0xD3F6FC16EBCA5E03ULL}, /* 1e-21 */
    {0xBCE5086492111AEAULL, 0x88F4BB1CA6BCF584ULL}, /* 1e-20 */
    {0xEC1E4A7DB69561A5ULL, 0x2B31E9E3D06C32E5ULL}, /* 1e-19 */
    {0x9392EE8E921D5D07ULL, 0x3AFF322E62439FCFULL}, /* 1e-18 */
    {0xB877AA3236A4B449ULL, 0x09BEFEB9FAD487C2ULL}, /* 1e-17 */
    {0xE69594BEC44DE15BULL, 0x4C2EBE687989A9B3ULL}, /* 1e-16 */
    {0x901D7CF73AB0ACD9ULL, 0x0F9D37014BF60A10ULL}, /* 1e-15 */
    {0xB424DC35095CD80FULL, 0x538484C19EF38C94ULL}, /* 1e-14 */
    {0xE12E13424BB40E13ULL, 0x2865A5F206B06FB9ULL}, /* 1e-13 */
    {0x8CBCCC096F5088CBULL, 0xF93F87B7442E45D3ULL}, /* 1e-12 */
    {0xAFEBFF0BCB24AAFEULL, 0xF78F69A51539D748ULL}, /* 1e-11 */
    {0xDBE6FECEBDEDD5BEULL, 0xB573440E5A884D1BULL}, /* 1e-10 */
    {0x89705F4136B4A597ULL, 0x31680A88F8953030ULL}, /* 1e-9 */
    {0xABCC77118461CEFCULL, 0xFDC20D2B36BA7C3DULL}, /* 1e-8 */
    {0xD6BF94D5E57A42BCULL, 0x3D32907604691B4CULL}, /* 1e-7 */
    {0x8637BD05AF6C69B5ULL, 0xA63F9A49C2C1B10FULL}, /* 1e-6 */
    {0xA7C5AC471B478423ULL, 0x0FCF80DC33721D53ULL}, /* 1e-5 */
    {0xD1B71758E219652BULL, 0xD3C36113404EA4A8ULL}, /* 1e-4 */
    {0x83126E978D4FDF3BULL, 0x645A1CAC083126E9ULL}, /* 1e-3 */
    {0xA3D70A3D70A3D70AULL, 0x3D70A3D70A3D70A3ULL}, /* 1e-2 */
    {0xCCCCCCCCCCCCCCCCULL, 0xCCCCCCCCCCCCCCCCULL}, /* 1e-1 */
    {0x8000000000000000ULL, 0x0000000000000000ULL}, /* 1e0 */
    {0xA000000000000000ULL, 0x0000000000000000ULL}, /* 1e1 */
    {0xC800000000000000ULL, 0x0000000000000000ULL}, /* 1e2 */
    {0xFA00000000000000ULL, 0x0000000000000000ULL}, /* 1e3 */
    {0x9C40000000000000ULL, 0x0000000000000000ULL}, /* 1e4 */
    {0xC350000000000000ULL, 0x0000000000000000ULL}, /* 1e5 */
    {0xF424000000000000ULL, 0x0000000000000000ULL}, /* 1e6 */
    {0x9896800000000000ULL, 0x0000000000000000ULL}, /* 1e7 */
    {0xBEBC200000000000ULL, 0x0000000000000000ULL}, /* 1e8 */
    {0xEE6B280000000000ULL, 0x0000000000000000ULL}, /* 1e9 */
    {0x9502F90000000000ULL, 0x0000000000000000ULL}, /* 1e10 */
    {0xBA43B74000000000ULL, 0x0000000000000000ULL}, /* 1e11 */
    {0xE8D4A51000000000ULL, 0x0000000000000000ULL}, /* 1e12 */
    {0x9184E72A00000000ULL, 0x0000000000000000ULL}, /* 1e13 */
    {0xB5E620F480000000ULL, 0x0000000000000000ULL}, /* 1e14 */
    {0xE35FA931A0000000ULL, 0x0000000000000000ULL}, /* 1e15 */
    {0x8E1BC9BF04000000ULL, 0x0000000000000000ULL}, /* 1e16 */
    {0xB1A2BC2EC5000000ULL, 0x0000000000000000ULL}, /* 1e17 */
    {0xDE0B6B3A76400000ULL, 0x0000000000000000ULL}, /* 1e18 */
    {0x8AC7230489E80000ULL, 0x0000000000000000ULL}, /* 1e19 */
    {0xAD78EBC5AC620000ULL, 0x0000000000000000ULL}, /* 1e20 */
    {0xD8D726B7177A8000ULL, 0x0000000000000000ULL}, /* 1e21 */
    {0x878678326EAC9000ULL, 0x0000000000000000ULL}, /* 1e22 */
    {0xA968163F0A57B400ULL, 0x0000000000000000ULL}, /* 1e23 */
    {0xD3C21BCECCEDA100ULL, 0x0000000000000000ULL}, /* 1e24 */
    {0x84595161401484A0ULL, 0x0000000000000000ULL}, /* 1e25 */
    {0xA56FA5B99019A5C8ULL, 0x0000000000000000ULL}, /* 1e26 */
    {0xCECB8F27F4200F3AULL, 0x0000000000000000ULL}, /* 1e27 */
    {0x813F3978F8940984ULL, 0x4000000000000000ULL}, /* 1e28 */
    {0xA18F07D736B90BE5ULL, 0x5000000000000000ULL}, /* 1e29 */
    {0xC9F2C9CD04674EDEULL, 0xA400000000000000ULL}, /* 1e30 */
    {0xFC6F7C4045812296ULL, 0x4D00000000000000ULL}, /* 1e31 */
    {0x9DC5ADA82B70B59DULL, 0xF020000000000000ULL}, /* 1e32 */
    {0xC5371912364CE305ULL, 0x6C28000000000000ULL}, /* 1e33 */
    {0xF684DF56C3E01BC6ULL, 0xC732000000000000ULL}, /* 1e34 */
    {0x9A130B963A6C115CULL, 0x3C7F400000000000ULL}, /* 1e35 */
    {0xC097CE7BC90715B3ULL, 0x4B9F100000000000ULL}, /* 1e36 */
    {0xF0BDC21ABB48DB20ULL, 0x1E86D40000000000ULL}, /* 1e37 */
    {0x96769950B50D88F4ULL, 0x1314448000000000ULL}, /* 1e38 */
    {0xBC143FA4E250EB31ULL, 0x17D955A000000000ULL}, /* 1e39 */
    {0xEB194F8E1AE525FDULL, 0x5DCFAB0800000000ULL}, /* 1e40 */
    {0x92EFD1B8D0CF37BEULL, 0x5AA1CAE500000000ULL}, /* 1e41 */
    {0xB7ABC627050305ADULL, 0xF14A3D9E40000000ULL}, /* 1e42 */
    {0xE596B7B0C643C719ULL, 0x6D9CCD05D0000000ULL}, /* 1e43 */
    {0x8F7E32CE7BEA5C6FULL, 0xE4820023A2000000ULL}, /* 1e44 */
    {0xB35DBF821AE4F38BULL, 0xDDA2802C8A800000ULL}, /* 1e45 */
    {0xE0352F62A19E306EULL, 0xD50B2037AD200000ULL}, /* 1e46 */
    {0x8C213D9DA502DE45ULL, 0x4526F422CC340000ULL}, /* 1e47 */
    {0xAF298D050E4395D6ULL, 0x9670B12B7F410000ULL}, /* 1e48 */
    {0xDAF3F04651D47B4CULL, 0x3C0CDD765F114000ULL}, /* 1e49 */
    {0x88D8762BF324CD0FULL, 0xA5880A69FB6AC800ULL}, /* 1e50 */
    {0xAB0E93B6EFEE0053ULL, 0x8EEA0D047A457A00ULL}, /* 1e51 */
    {0xD5D238A4ABE98068ULL, 0x72A4904598D6D880ULL}, /* 1e52 */
    {0x85A36366EB71F041ULL, 0x47A6DA2B7F864750ULL}, /* 1e53 */
    {0xA70C3C40A64E6C51ULL, 0x999090B65F67D924ULL}, /* 1e54 */
    {0xD0CF4B50CFE20765ULL, 0xFFF4B4E3F741CF6DULL}, /* 1e55 */
    {0x82818F1281ED449FULL, 0xBFF8F10E7A8921A4ULL}, /* 1e56 */
    {0xA321F2D7226895C7ULL, 0xAFF72D52192B6A0DULL}, /* 1e57 */
    {0xCBEA6F8CEB02BB39ULL, 0x9BF4F8A69F764490ULL}, /* 1e58 */
    {0xFEE50B7025C36A08ULL, 0x02F236D04753D5B4ULL}, /* 1e59 */
    {0x9F4F2726179A2245ULL, 0x01D762422C946590ULL}, /* 1e60 */
    {0xC722F0EF9D80AAD6ULL, 0x424D3AD2B7B97EF5ULL}, /* 1e61 */
    {0xF8EBAD2B84E0D58BULL, 0xD2E0898765A7DEB2ULL}, /* 1e62 */
    {0x9B934C3B330C8577ULL, 0x63CC55F49F88EB2FULL}, /* 1e63 */
};

/* Below this, w has fewer than 19 significant digits and takes one more
 * without overflow; below W_ROOM_8 it takes eight more. */
#define W_ROOM_1 1000000000000000000ULL /* 10^18 */
#define W_ROOM_8 100000000000ULL        /* 10^11 */

/* The double nearest w * 10^q (w != 0, q within the table), Eisel-Lemire:
 * the 128-bit product of w and the table's 10^q holds the double's 53
 * bits and enough below them to round, unless the bits below are so close
 * to a half that the table's truncation could matter; then -1 (strtod
 * decides). A port of Go's strconv.eiselLemire64. */
static int eisel_lemire(uint64_t w, int q, double *out)
{
    int clz = __builtin_clzll(w);
    w <<= clz;
    const uint64_t *t = pow10_128[q - POW10_MIN];
    /* floor(q * log2(10)): 217706 / 2^16 is log2(10) closely enough for
     * every q of the table */
    int floor_log2 = q >= 0 ? (217706 * q) >> 16 : -((-217706 * q + 65535) >> 16);
    int64_t e2 = (int64_t)floor_log2 + 64 + 1023 - clz;
    unsigned __int128 x = (unsigned __int128)w * t[0];
    uint64_t hi = (uint64_t)(x >> 64), lo = (uint64_t)x;
    if ((hi & 0x1FF) == 0x1FF && lo + w < w) {
        /* The bits below the double's could carry: bring in the table's
         * low 64 bits. */
        unsigned __int128 y = (unsigned __int128)w * t[1];
        uint64_t yhi = (uint64_t)(y >> 64), ylo = (uint64_t)y;
        uint64_t mhi = hi, mlo = lo + yhi;
        if (mlo < lo)
            mhi++;
        if ((mhi & 0x1FF) == 0x1FF && mlo + 1 == 0 && ylo + w < w)
            return -1;
        hi = mhi;
        lo = mlo;
    }
    uint64_t msb = hi >> 63;
    uint64_t m = hi >> (msb + 9); /* 54 bits: the double's and one to round */
    e2 -= (int64_t)(1 ^ msb);
    if (lo == 0 && (hi & 0x1FF) == 0 && (m & 3) == 1)
        return -1; /* exactly between two doubles, or so it seems */
    m += m & 1;
    m >>= 1;
    if (m >> 53) {
        m >>= 1;
        e2++;
    }
    if (e2 <= 0 || e2 >= 0x7FF)
        return -1;
    uint64_t bits = (uint64_t)e2 << 52 | (m & ((1ULL << 52) - 1));
    memcpy(out, &bits, sizeof *out);
    return 0;
}

/* strtod of the literal s[0..n), which the grammar has checked. -1 when
 * it overflows the double range (Jansson refuses it: "real number
 * overflow") or memory runs out. Nothing here sets a locale, so strtod's
 * decimal point is '.'. */
static int literal_strtod(const char *s, size_t n, double *out)
{
    char small[128];
    char *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    double d = strtod(buf, NULL);
    int overflow = (d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE;
    if (buf != small)
        free(buf);
    *out = d;
    return overflow ? -1 : 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Whether the eight bytes of a little-endian word are all ASCII digits. */
static int is_8_digits(uint64_t v)
{
    return !(((v + 0x4646464646464646ULL) | (v - 0x3030303030303030ULL)) &
             0x8080808080808080ULL);
}

/* The value of eight ASCII digits in a little-endian word, the first
 * digit in the lowest byte: pairs, then fours, then all eight combined by
 * multiplications. */
static uint32_t parse_8_digits(uint64_t v)
{
    const uint64_t mask = 0x000000FF000000FFULL;
    const uint64_t mul1 = 0x000F424000000064ULL; /* 100 + (1000000 << 32) */
    const uint64_t mul2 = 0x0000271000000001ULL; /* 1 + (10000 << 32) */
    v -= 0x3030303030303030ULL;
    v = v * 10 + (v >> 8);
    v = (((v & mask) * mul1) + (((v >> 16) & mask) * mul2)) >> 32;
    return (uint32_t)v;
}

/* Reads the digits at p into w, dropping (and flagging in *too_long)
 * those past the 19 significant digits w can hold; returns the end of the
 * digits. Eight digits at a time while they fit, in a word (SWAR, as in
 * Lemire's fast_float): most pixels are printed with 16 or 17 digits. */
static inline __attribute__((always_inline)) const char *read_digits(const char *p, const char *end,
                                                                     uint64_t *w, int *too_long)
{
    uint64_t v = *w;
    while (end - p >= 8 && v < W_ROOM_8) {
        uint64_t chunk;
        memcpy(&chunk, p, 8);
        if (!is_8_digits(chunk))
            break;
        v = 100000000 * v + parse_8_digits(chunk);
        p += 8;
    }
    for (; p < end && is_digit(*p); p++) {
        if (v < W_ROOM_1)
            v = 10 * v + (uint64_t)(*p - '0');
        else
            *too_long = 1;
    }
    *w = v;
    return p;
}

/* The double of the real literal s..p, which is w * 10^q (w != 0; the
 * digits past w's 19 dropped when too_long). -1 when it overflows. Out of
 * line: the reader's loop keeps only the scanning. */
static __attribute__((noinline)) int real_to_double(uint64_t w, int64_t q, int too_long,
                                                     int neg, const char *s, const char *p,
                                                     double *out)
{
    if (too_long || q < POW10_MIN || q > POW10_MAX || eisel_lemire(w, (int)q, out))
        return literal_strtod(s, (size_t)(p - s), out);
    if (neg)
        *out = -*out;
    return 0;
}

/* The number literal at s as a float; returns the byte after it, or NULL
 * (see bs_tensor_json_number). Inlined into the array reader's loop. */
static inline __attribute__((always_inline)) const char *read_number(const char *s, const char *end, float *out)
{
    const char *p = s;
    int neg = p < end && *p == '-';
    p += neg;
    if (p == end || !is_digit(*p))
        return NULL;
    /* value = w * 10^q, w holding the first 19 significant digits */
    uint64_t w = 0;
    int too_long = 0, real = 0;
    int64_t q = 0;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return NULL; /* JSON has no leading zeros */
    } else {
        p = read_digits(p, end, &w, &too_long);
    }
    if (p < end && *p == '.') {
        p++;
        if (p == end || !is_digit(*p))
            return NULL;
        real = 1;
        const char *frac = p;
        p = read_digits(p, end, &w, &too_long);
        q -= (int64_t)(p - frac);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = p < end && *p == '-';
        p += p < end && (*p == '-' || *p == '+');
        if (p == end || !is_digit(*p))
            return NULL;
        real = 1;
        int e = 0;
        for (; p < end && is_digit(*p); p++)
            if (e < 100000) /* far outside the double range either way */
                e = 10 * e + (*p - '0');
        q += eneg ? -e : e;
    }
    double d;
    if (!real) {
        /* Jansson's integer: strtoll, refused outside int64; "-0" is 0 */
        if (too_long || w > (uint64_t)INT64_MAX + neg)
            return NULL;
        d = neg && w ? -(double)w : (double)w;
    } else if (w == 0) {
        d = neg ? -0.0 : 0.0;
    } else if (real_to_double(w, q, too_long, neg, s, p, &d)) {
        return NULL;
    }
    *out = (float)d;
    return p;
}

int bs_tensor_json_number(const char *s, const char *end, float *out, const char **stop)
{
    const char *p = read_number(s, end, out);
    if (!p)
        return -1;
    *stop = p;
    return 0;
}

/* ---- an array of numbers ------------------------------------------------ */

/* Nesting deeper than this is left to Jansson: inputs need four levels. */
#define MAX_DEPTH 32

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

/* Reads the array at p (a '['), whose elements are numbers and arrays
 * like it, into *values (malloc'd, *n of them); returns the byte after
 * its ']'. NULL for anything else, or when memory runs out: the caller
 * leaves it to Jansson. Nested arrays need no stack, only their depth. */
static const char *read_numbers(const char *p, const char *end, float **values, size_t *n)
{
    size_t cap = 1024;
    float *v = malloc(cap * sizeof *v), *dst = v, *stop = v + cap;
    int depth = 0;
    if (!v)
        return NULL;
    for (;;) {
        /* a value, or the ']' of an array just opened */
        if (p == end)
            goto refuse;
        if (*p == '[') {
            if (++depth > MAX_DEPTH)
                goto refuse;
            p = skip_ws(p + 1, end);
            if (p == end || *p != ']')
                continue;
            /* empty: its ']' is closed below */
        } else {
            if (dst == stop) {
                float *grown = realloc(v, 2 * cap * sizeof *v);
                if (!grown)
                    goto refuse;
                dst = grown + cap;
                v = grown;
                cap *= 2;
                stop = v + cap;
            }
            p = read_number(p, end, dst++);
            if (!p)
                goto refuse;
        }
        /* after a value: ',' and the next, or ']' closing arrays */
        for (;;) {
            p = skip_ws(p, end);
            if (p == end)
                goto refuse;
            if (*p == ',') {
                p = skip_ws(p + 1, end);
                break;
            }
            if (*p != ']')
                goto refuse;
            p++;
            if (--depth == 0) {
                *values = v;
                *n = (size_t)(dst - v);
                return p;
            }
        }
    }
refuse:
    free(v);
    return NULL;
}

/* ---- finding inputs[0].data --------------------------------------------- */

/* Past the closing quote of the string at p (a '"'); NULL when it does
 * not close. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '"')
            return p + 1;
        if (*p == '\\' && ++p == end) /* the escaped byte is skipped */
            break;
    }
    return NULL;
}

/* Past the value at p, matching brackets outside strings; NULL when the
 * body ends first. */
static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            p = skip_string(p, end);
            if (!p || depth == 0)
                return p;
            continue;
        }
        if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            if (depth == 0)
                return p; /* a scalar ended by its container */
            if (--depth == 0)
                return p + 1;
        } else if (depth == 0 && (c == ',' || is_ws(c))) {
            return p;
        }
        p++;
    }
    return NULL;
}

/* The value of the member whose key is, byte for byte, name in the object
 * at p (a '{'); NULL when there is none or the text is not what it
 * should be. An escaped key ("d\u0061ta") is not recognised, which only
 * means the slow path. */
static const char *find_member(const char *p, const char *end, const char *name)
{
    size_t n = strlen(name);
    for (p++;; p++) {
        p = skip_ws(p, end);
        if (p == end || *p != '"')
            return NULL;
        const char *key = p + 1;
        p = skip_string(p, end);
        if (!p)
            return NULL;
        int match = (size_t)(p - 1 - key) == n && !memcmp(key, name, n);
        p = skip_ws(p, end);
        if (p == end || *p != ':')
            return NULL;
        p = skip_ws(p + 1, end);
        if (match)
            return p < end ? p : NULL;
        p = skip_value(p, end);
        if (!p)
            return NULL;
        p = skip_ws(p, end);
        if (p == end || *p != ',')
            return NULL;
    }
}

/* The '[' that starts inputs[0].data, or NULL. */
static const char *find_data(const char *p, const char *end)
{
    p = skip_ws(p, end);
    if (p == end || *p != '{')
        return NULL;
    p = find_member(p, end, "inputs");
    if (!p || *p != '[')
        return NULL;
    p = skip_ws(p + 1, end);
    if (p == end || *p != '{')
        return NULL;
    p = find_member(p, end, "data");
    return p && *p == '[' ? p : NULL;
}

json_t *bs_tensor_json_load(const char *body, size_t len, bs_tensor_data *data,
                            json_error_t *error)
{
    data->values = NULL;
    data->n = 0;
    const char *end = body + len;
    const char *start = find_data(body, end), *stop = NULL;
    float *values = NULL;
    size_t n = 0;
    if (start)
        stop = read_numbers(start, end, &values, &n);
    if (stop && n > 0) {
        /* The document with the array replaced by [] */
        size_t head = (size_t)(start - body), tail = (size_t)(end - stop);
        char *doc = malloc(head + 2 + tail);
        if (doc) {
            memcpy(doc, body, head);
            memcpy(doc + head, "[]", 2);
            memcpy(doc + head + 2, stop, tail);
            json_t *root = json_loadb(doc, head + 2 + tail, JSON_REJECT_DUPLICATES, error);
            free(doc);
            if (root) {
                data->values = values;
                data->n = n;
                return root;
            }
        }
    }
    /* Anything else, and every error, as Jansson sees the whole body. */
    free(values);
    return json_loadb(body, len, JSON_REJECT_DUPLICATES, error);
}

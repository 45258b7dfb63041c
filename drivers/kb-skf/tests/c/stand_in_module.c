/* A stand-in for a vendor SKF module, built by the tests with gcc. It reproduces two
 * behaviours of real vendor modules that nobody here wrote (issue 13):
 *
 * - SKF_WaitForDevEvent returns at once, every time (modules that do not implement
 *   waiting), reporting the one device as inserted;
 * - out-parameter structures are written past the standard's layout: OVERWRITE extra
 *   bytes of 0xEE after DEVINFO (one vendor wrote 296 bytes into the 294-byte packed
 *   DEVINFO), ECCPUBLICKEYBLOB and ECCSIGNATUREBLOB, and after each ULONG/BOOL that
 *   SKF_GetPINInfo and SKF_GetContainerType fill in.
 *
 * Build: gcc -shared -fPIC -DOVERWRITE=<bytes> [-DGATE] -o lib.so stand_in_module.c
 * With GATE, every enumeration after the first blocks until StandIn_Release() is called.
 * StandIn_Count(0) = SKF_WaitForDevEvent calls, StandIn_Count(1) = enumerations (SKF_EnumDev
 * size queries, the first call of each enumeration).
 * One device "standin" (serial SI-0001), application "APP", container "con"; every PIN
 * is right; the signing key is the SM2 generator point G; signatures are r = 1, s = 2. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#ifndef OVERWRITE
#define OVERWRITE 0
#endif

typedef uint32_t ULONG;
typedef int32_t BOOL;
typedef void *HANDLE;

static volatile ULONG counts[2];
static volatile int released;
static volatile int cancelled;

ULONG StandIn_Count(int which) { return __atomic_load_n(&counts[which & 1], __ATOMIC_SEQ_CST); }
void StandIn_Release(void) { __atomic_store_n(&released, 1, __ATOMIC_SEQ_CST); }

/* Write `n` bytes of `src` to `dst`, then OVERWRITE bytes of 0xEE. */
static void overwrite(void *dst, const void *src, size_t n) {
    memcpy(dst, src, n);
    memset((unsigned char *)dst + n, 0xEE, OVERWRITE);
}
static void put_ulong(void *dst, ULONG v) { overwrite(dst, &v, sizeof v); }

static HANDLE const DEV = (HANDLE)0x1001, APP = (HANDLE)0x2001, CON = (HANDLE)0x3001;

static ULONG multi(const char *name, char *buf, ULONG *len) {
    ULONG need = (ULONG)strlen(name) + 2;
    if (!buf) { *len = need; return 0; }
    if (*len < need) { *len = need; return 0x0A000020; }
    memset(buf, 0, need);
    memcpy(buf, name, need - 2);
    *len = need;
    return 0;
}

ULONG SKF_WaitForDevEvent(char *name, ULONG *len, ULONG *event) {
    __atomic_fetch_add(&counts[0], 1, __ATOMIC_SEQ_CST);
    if (cancelled) return 0x0A000022; /* SAR_NOT_EVENTERR */
    ULONG rv = multi("standin", name, len);
    put_ulong(event, 1);
    return rv;
}
ULONG SKF_CancelWaitForDevEvent(void) { cancelled = 1; return 0; }

ULONG SKF_EnumDev(BOOL present, char *list, ULONG *size) {
    (void)present;
    /* An enumeration starts with the size query (NULL list) of the two-call convention. */
    if (list) return multi("standin", list, size);
    ULONG n = __atomic_add_fetch(&counts[1], 1, __ATOMIC_SEQ_CST);
#ifdef GATE
    while (n > 1 && !__atomic_load_n(&released, __ATOMIC_SEQ_CST)) usleep(1000);
#else
    (void)n;
#endif
    return multi("standin", list, size);
}
ULONG SKF_ConnectDev(const char *name, HANDLE *dev) { (void)name; *dev = DEV; return 0; }
ULONG SKF_DisConnectDev(HANDLE dev) { (void)dev; return 0; }

#pragma pack(push, 1)
typedef struct { unsigned char major, minor; } VERSION;
typedef struct {
    VERSION Version; char Manufacturer[64]; char Issuer[64]; char Label[32]; char SerialNumber[32];
    VERSION HWVersion; VERSION FirmwareVersion;
    ULONG AlgSymCap, AlgAsymCap, AlgHashCap, DevAuthAlgId, TotalSpace, FreeSpace, MaxECCBufferSize, MaxBufferSize;
    unsigned char Reserved[64];
} DEVINFO;
#pragma pack(pop)
typedef struct { ULONG BitLen; unsigned char X[64]; unsigned char Y[64]; } ECCPUBLICKEYBLOB;
typedef struct { unsigned char r[64]; unsigned char s[64]; } ECCSIGNATUREBLOB;

ULONG SKF_GetDevInfo(HANDLE dev, DEVINFO *info) {
    (void)dev;
    DEVINFO d;
    memset(&d, 0, sizeof d);
    d.Version.major = 1;
    strcpy(d.Manufacturer, "Stand-in Vendor");
    strcpy(d.Issuer, "Stand-in");
    strcpy(d.Label, "stand-in key");
    strcpy(d.SerialNumber, "SI-0001");
    d.AlgAsymCap = 0x00020100;
    d.MaxBufferSize = 0x12345678;
    memset(d.Reserved, 0x5A, sizeof d.Reserved);
    overwrite(info, &d, sizeof d);
    return 0;
}

ULONG SKF_EnumApplication(HANDLE dev, char *names, ULONG *size) { (void)dev; return multi("APP", names, size); }
ULONG SKF_OpenApplication(HANDLE dev, const char *name, HANDLE *app) { (void)dev; (void)name; *app = APP; return 0; }
ULONG SKF_CloseApplication(HANDLE app) { (void)app; return 0; }
ULONG SKF_VerifyPIN(HANDLE app, ULONG type, const char *pin, ULONG *retries) {
    (void)app; (void)type; (void)pin; (void)retries;
    return 0;
}
ULONG SKF_ChangePIN(HANDLE app, ULONG type, const char *o, const char *n, ULONG *retries) {
    (void)app; (void)type; (void)o; (void)n; (void)retries;
    return 0;
}
ULONG SKF_GetPINInfo(HANDLE app, ULONG type, ULONG *max, ULONG *remaining, BOOL *is_default) {
    (void)app; (void)type;
    put_ulong(max, 10);
    put_ulong(remaining, 7);
    put_ulong(is_default, 0);
    return 0;
}
ULONG SKF_UnblockPIN(HANDLE app, const char *so, const char *n, ULONG *retries) {
    (void)app; (void)so; (void)n; (void)retries;
    return 0;
}
ULONG SKF_ClearSecureState(HANDLE app) { (void)app; return 0; }
ULONG SKF_EnumContainer(HANDLE app, char *names, ULONG *size) { (void)app; return multi("con", names, size); }
ULONG SKF_CreateContainer(HANDLE app, const char *name, HANDLE *c) { (void)app; (void)name; *c = CON; return 0; }
ULONG SKF_DeleteContainer(HANDLE app, const char *name) { (void)app; (void)name; return 0; }
ULONG SKF_OpenContainer(HANDLE app, const char *name, HANDLE *c) { (void)app; (void)name; *c = CON; return 0; }
ULONG SKF_CloseContainer(HANDLE c) { (void)c; return 0; }
ULONG SKF_GetContainerType(HANDLE c, ULONG *type) { (void)c; put_ulong(type, 2); return 0; }
ULONG SKF_ImportCertificate(HANDLE c, BOOL sign, const unsigned char *cert, ULONG len) {
    (void)c; (void)sign; (void)cert; (void)len;
    return 0;
}
ULONG SKF_ExportCertificate(HANDLE c, BOOL sign, unsigned char *cert, ULONG *len) {
    (void)c; (void)sign; (void)cert; (void)len;
    return 0x0A00001C; /* SAR_CERTNOTFOUNTERR */
}

/* The SM2 generator point G: a valid public key. */
static const unsigned char GX[32] = {0x32,0xC4,0xAE,0x2C,0x1F,0x19,0x81,0x19,0x5F,0x99,0x04,0x46,0x6A,0x39,0xC9,0x94,
                                     0x8F,0xE3,0x0B,0xBF,0xF2,0x66,0x0B,0xE1,0x71,0x5A,0x45,0x89,0x33,0x4C,0x74,0xC7};
static const unsigned char GY[32] = {0xBC,0x37,0x36,0xA2,0xF4,0xF6,0x77,0x9C,0x59,0xBD,0xCE,0xE3,0x6B,0x69,0x21,0x53,
                                     0xD0,0xA9,0x87,0x7C,0xC6,0x2A,0x47,0x40,0x02,0xDF,0x32,0xE5,0x21,0x39,0xF0,0xA0};
static void g_blob(ECCPUBLICKEYBLOB *b) {
    memset(b, 0, sizeof *b);
    b->BitLen = 256;
    memcpy(b->X + 32, GX, 32);
    memcpy(b->Y + 32, GY, 32);
}
ULONG SKF_ExportPublicKey(HANDLE c, BOOL sign, unsigned char *blob, ULONG *len) {
    (void)c;
    if (!sign) return 0x0A00001B; /* SAR_KEYNOTFOUNTERR: no encryption pair */
    if (!blob) { *len = sizeof(ECCPUBLICKEYBLOB); return 0; }
    if (*len < sizeof(ECCPUBLICKEYBLOB)) return 0x0A000020;
    ECCPUBLICKEYBLOB b;
    g_blob(&b);
    memcpy(blob, &b, sizeof b); /* the two-call convention bounds this one */
    *len = sizeof b;
    return 0;
}
ULONG SKF_GenECCKeyPair(HANDLE c, ULONG alg, ECCPUBLICKEYBLOB *out) {
    (void)c; (void)alg;
    ECCPUBLICKEYBLOB b;
    g_blob(&b);
    overwrite(out, &b, sizeof b);
    return 0;
}
ULONG SKF_ECCSignData(HANDLE c, const unsigned char *data, ULONG len, ECCSIGNATUREBLOB *sig) {
    (void)c; (void)data; (void)len;
    ECCSIGNATUREBLOB s;
    memset(&s, 0, sizeof s);
    s.r[63] = 1;
    s.s[63] = 2;
    overwrite(sig, &s, sizeof s);
    return 0;
}

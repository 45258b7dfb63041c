/* GM/T 0016-2012 types as vendor headers declare them (packed), and the helpers the
 * independent C consumers in this directory share. Written from the standard, not from
 * KeyBridge's Rust definitions, so the programs check the module's ABI independently. */
#ifndef KB_SKF_TEST_H
#define KB_SKF_TEST_H
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint32_t ULONG;
typedef int32_t BOOL;
typedef void *HANDLE;
#pragma pack(push, 1)
typedef struct { unsigned char major, minor; } VERSION;
typedef struct {
    VERSION Version; char Manufacturer[64]; char Issuer[64]; char Label[32]; char SerialNumber[32];
    VERSION HWVersion; VERSION FirmwareVersion;
    ULONG AlgSymCap, AlgAsymCap, AlgHashCap, DevAuthAlgId, TotalSpace, FreeSpace, MaxECCBufferSize, MaxBufferSize;
    unsigned char Reserved[64];
} DEVINFO;
typedef struct { ULONG BitLen; unsigned char XCoordinate[64]; unsigned char YCoordinate[64]; } ECCPUBLICKEYBLOB;
typedef struct { unsigned char r[64]; unsigned char s[64]; } ECCSIGNATUREBLOB;
typedef struct { unsigned char IV[32]; ULONG IVLen; ULONG PaddingType; ULONG FeedBitLen; } BLOCKCIPHERPARAM;
#pragma pack(pop)

#define SAR_OK 0
#define SAR_BUFFER_TOO_SMALL 0x0A000020
#define USER_TYPE 1
#define SGD_SM3 0x00000001

static void *lib;

/* The module's function `name`; exits (status 2) when the module lacks it. */
static void *sym(const char *name) {
    void *p = dlsym(lib, name);
    if (!p) { printf("error=missing %s\n", name); exit(2); }
    return p;
}

/* Exit (status 3) naming the call when it does not return SAR_OK. */
#define CALL(expr) do { ULONG rv_ = (expr); if (rv_ != SAR_OK) { printf("error=%s rv=0x%08X\n", #expr, rv_); exit(3); } } while (0)

static void hex(const char *key, const unsigned char *b, size_t n) {
    printf("%s=", key);
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    printf("\n");
}
#endif

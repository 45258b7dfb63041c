/* An independent SKF consumer in C that does what open-source SKF tools and CA signing
 * controls do before and while signing: it declares the GM/T 0016-2012 types itself
 * (packed as in vendor headers), dlopens a module, checks the device's state, locks it,
 * authenticates the device (GenRandom -> SetSymmKey(DevAuthAlgId) -> EncryptInit ->
 * Encrypt -> CloseHandle -> DevAuth), opens the application, verifies the PIN, hashes
 * with SKF_DigestInit (ZA of the signing key and the default ID) and signs.
 * Usage: skf_ca_control <module.so> <user PIN> <message> <dev-auth key> <wrong key> [new key]
 * Keys are 16 ASCII characters. With a new key, the device-auth key is changed to it and
 * checked (the new key works, the old one no longer does).
 * Prints key=value lines; exits non-zero on the first unexpected result. */
#include "skf_test.h"

static ULONG (*GenRandom)(HANDLE, unsigned char *, ULONG);
static ULONG (*SetSymmKey)(HANDLE, unsigned char *, ULONG, HANDLE *);
static ULONG (*EncryptInit)(HANDLE, BLOCKCIPHERPARAM);
static ULONG (*Encrypt)(HANDLE, unsigned char *, ULONG, unsigned char *, ULONG *);
static ULONG (*CloseHandle)(HANDLE);
static ULONG (*DevAuth)(HANDLE, unsigned char *, ULONG);

/* Device authentication as the tools do it; returns SKF_DevAuth's result. */
static ULONG authenticate(HANDLE dev, ULONG alg, const char *key) {
    unsigned char random[16] = {0}, auth[32];
    HANDLE k;
    CALL(GenRandom(dev, random, 8));
    CALL(SetSymmKey(dev, (unsigned char *)key, alg, &k));
    BLOCKCIPHERPARAM p;
    memset(&p, 0, sizeof p);
    CALL(EncryptInit(k, p));
    ULONG len = 0;
    CALL(Encrypt(k, random, 16, NULL, &len));
    if (len != 16) { printf("error=encrypt size %u\n", len); exit(4); }
    CALL(Encrypt(k, random, 16, auth, &len));
    CALL(CloseHandle(k));
    return DevAuth(dev, auth, len);
}

int main(int argc, char **argv) {
    if (argc < 6 || strlen(argv[4]) != 16 || strlen(argv[5]) != 16 || (argc > 6 && strlen(argv[6]) != 16)) {
        fprintf(stderr, "usage\n");
        return 1;
    }
    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { printf("error=dlopen %s\n", dlerror()); return 2; }
    ULONG (*EnumDev)(BOOL, char *, ULONG *) = sym("SKF_EnumDev");
    ULONG (*GetDevState)(char *, ULONG *) = sym("SKF_GetDevState");
    ULONG (*ConnectDev)(char *, HANDLE *) = sym("SKF_ConnectDev");
    ULONG (*DisConnectDev)(HANDLE) = sym("SKF_DisConnectDev");
    ULONG (*GetDevInfo)(HANDLE, DEVINFO *) = sym("SKF_GetDevInfo");
    ULONG (*LockDev)(HANDLE, ULONG) = sym("SKF_LockDev");
    ULONG (*UnlockDev)(HANDLE) = sym("SKF_UnlockDev");
    ULONG (*ChangeDevAuthKey)(HANDLE, unsigned char *, ULONG) = sym("SKF_ChangeDevAuthKey");
    ULONG (*EnumApplication)(HANDLE, char *, ULONG *) = sym("SKF_EnumApplication");
    ULONG (*OpenApplication)(HANDLE, char *, HANDLE *) = sym("SKF_OpenApplication");
    ULONG (*CloseApplication)(HANDLE) = sym("SKF_CloseApplication");
    ULONG (*VerifyPIN)(HANDLE, ULONG, char *, ULONG *) = sym("SKF_VerifyPIN");
    ULONG (*EnumContainer)(HANDLE, char *, ULONG *) = sym("SKF_EnumContainer");
    ULONG (*OpenContainer)(HANDLE, char *, HANDLE *) = sym("SKF_OpenContainer");
    ULONG (*CloseContainer)(HANDLE) = sym("SKF_CloseContainer");
    ULONG (*ExportPublicKey)(HANDLE, BOOL, unsigned char *, ULONG *) = sym("SKF_ExportPublicKey");
    ULONG (*DigestInit)(HANDLE, ULONG, ECCPUBLICKEYBLOB *, unsigned char *, ULONG, HANDLE *) = sym("SKF_DigestInit");
    ULONG (*Digest)(HANDLE, unsigned char *, ULONG, unsigned char *, ULONG *) = sym("SKF_Digest");
    ULONG (*ECCSignData)(HANDLE, unsigned char *, ULONG, ECCSIGNATUREBLOB *) = sym("SKF_ECCSignData");
    ULONG (*ECCVerify)(HANDLE, ECCPUBLICKEYBLOB *, unsigned char *, ULONG, ECCSIGNATUREBLOB *) = sym("SKF_ECCVerify");
    GenRandom = sym("SKF_GenRandom");
    SetSymmKey = sym("SKF_SetSymmKey");
    EncryptInit = sym("SKF_EncryptInit");
    Encrypt = sym("SKF_Encrypt");
    CloseHandle = sym("SKF_CloseHandle");
    DevAuth = sym("SKF_DevAuth");

    char names[1024];
    ULONG size = sizeof names;
    CALL(EnumDev(1, names, &size));
    printf("device=%s\n", names);
    ULONG state = 99;
    CALL(GetDevState(names, &state));
    printf("dev_state=%u\n", state);
    CALL(GetDevState("no-such-key", &state));
    printf("absent_state=%u\n", state);

    HANDLE dev, other, app, con, hash;
    CALL(ConnectDev(names, &dev));
    DEVINFO info;
    memset(&info, 0, sizeof info);
    CALL(GetDevInfo(dev, &info));
    printf("dev_auth_alg=0x%08X\nsym_cap=0x%08X\n", info.DevAuthAlgId, info.AlgSymCap);
    CALL(LockDev(dev, 0xFFFFFFFFu));
    /* A second handle cannot take the lock while the first holds it. */
    CALL(ConnectDev(names, &other));
    printf("lock_contended_rv=0x%08X\n", LockDev(other, 100));
    printf("change_unauthenticated_rv=0x%08X\n", ChangeDevAuthKey(other, (unsigned char *)argv[5], 16));
    CALL(DisConnectDev(other));

    printf("wrong_auth_rv=0x%08X\n", authenticate(dev, info.DevAuthAlgId, argv[5]));
    unsigned char junk[16] = {0};
    printf("auth_without_random_rv=0x%08X\n", DevAuth(dev, junk, 16));
    CALL(authenticate(dev, info.DevAuthAlgId, argv[4]));
    printf("dev_auth=ok\n");
    if (argc > 6) {
        CALL(ChangeDevAuthKey(dev, (unsigned char *)argv[6], 16));
        printf("old_key_after_change_rv=0x%08X\n", authenticate(dev, info.DevAuthAlgId, argv[4]));
        CALL(authenticate(dev, info.DevAuthAlgId, argv[6]));
        printf("new_key=ok\n");
    }

    char apps[256];
    size = sizeof apps;
    CALL(EnumApplication(dev, apps, &size));
    CALL(OpenApplication(dev, apps, &app));
    ULONG retries = 0;
    CALL(VerifyPIN(app, USER_TYPE, argv[2], &retries));
    char containers[1024];
    size = sizeof containers;
    CALL(EnumContainer(app, containers, &size));
    CALL(OpenContainer(app, containers, &con));
    ECCPUBLICKEYBLOB pub;
    size = sizeof pub;
    CALL(ExportPublicKey(con, 1, (unsigned char *)&pub, &size));
    hex("pub_x", pub.XCoordinate + 32, 32);
    hex("pub_y", pub.YCoordinate + 32, 32);

    /* e = SM3(ZA || M) on the device, with the standard's default ID. */
    CALL(DigestInit(dev, SGD_SM3, &pub, (unsigned char *)"1234567812345678", 16, &hash));
    unsigned char e[32];
    ULONG elen = 0;
    CALL(Digest(hash, (unsigned char *)argv[3], (ULONG)strlen(argv[3]), NULL, &elen));
    if (elen != 32) { printf("error=digest size %u\n", elen); return 4; }
    CALL(Digest(hash, (unsigned char *)argv[3], (ULONG)strlen(argv[3]), e, &elen));
    CALL(CloseHandle(hash));
    hex("e", e, 32);
    ECCSIGNATUREBLOB sig;
    CALL(ECCSignData(con, e, 32, &sig));
    hex("sig_r", sig.r + 32, 32);
    hex("sig_s", sig.s + 32, 32);
    CALL(ECCVerify(dev, &pub, e, 32, &sig));
    e[0] ^= 1;
    printf("verify_other_digest_rv=0x%08X\n", ECCVerify(dev, &pub, e, 32, &sig));

    CALL(CloseContainer(con));
    CALL(CloseApplication(app));
    CALL(UnlockDev(dev));
    CALL(DisConnectDev(dev));
    printf("done=1\n");
    return 0;
}

/* An independent SKF consumer in C: declares the GM/T 0016-2012 types itself (packed as
 * in vendor headers), dlopens a module and drives it the way a CA's signing control does.
 * Usage: skf_consumer <module.so> <user PIN> <64 hex digits of e = SM3(ZA || M)>
 * Prints key=value lines; exits non-zero on the first unexpected result. */
#include "skf_test.h"

int main(int argc, char **argv) {
    if (argc != 4 || strlen(argv[3]) != 64) { fprintf(stderr, "usage\n"); return 1; }
    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { printf("error=dlopen %s\n", dlerror()); return 2; }
    ULONG (*EnumDev)(BOOL, char *, ULONG *) = sym("SKF_EnumDev");
    ULONG (*ConnectDev)(char *, HANDLE *) = sym("SKF_ConnectDev");
    ULONG (*DisConnectDev)(HANDLE) = sym("SKF_DisConnectDev");
    ULONG (*GetDevInfo)(HANDLE, DEVINFO *) = sym("SKF_GetDevInfo");
    ULONG (*EnumApplication)(HANDLE, char *, ULONG *) = sym("SKF_EnumApplication");
    ULONG (*OpenApplication)(HANDLE, char *, HANDLE *) = sym("SKF_OpenApplication");
    ULONG (*CloseApplication)(HANDLE) = sym("SKF_CloseApplication");
    ULONG (*VerifyPIN)(HANDLE, ULONG, char *, ULONG *) = sym("SKF_VerifyPIN");
    ULONG (*EnumContainer)(HANDLE, char *, ULONG *) = sym("SKF_EnumContainer");
    ULONG (*OpenContainer)(HANDLE, char *, HANDLE *) = sym("SKF_OpenContainer");
    ULONG (*CloseContainer)(HANDLE) = sym("SKF_CloseContainer");
    ULONG (*GetContainerType)(HANDLE, ULONG *) = sym("SKF_GetContainerType");
    ULONG (*ExportPublicKey)(HANDLE, BOOL, unsigned char *, ULONG *) = sym("SKF_ExportPublicKey");
    ULONG (*ExportCertificate)(HANDLE, BOOL, unsigned char *, ULONG *) = sym("SKF_ExportCertificate");
    ULONG (*ECCSignData)(HANDLE, unsigned char *, ULONG, ECCSIGNATUREBLOB *) = sym("SKF_ECCSignData");

    ULONG size = 0;
    CALL(EnumDev(1, NULL, &size));
    char *names = calloc(1, size);
    ULONG small = 1;
    if (EnumDev(1, names, &small) != SAR_BUFFER_TOO_SMALL || small != size) { printf("error=short buffer not reported\n"); return 4; }
    CALL(EnumDev(1, names, &size));
    printf("device=%s\n", names);

    HANDLE dev, app, con;
    CALL(ConnectDev(names, &dev));
    DEVINFO info;
    memset(&info, 0, sizeof info);
    CALL(GetDevInfo(dev, &info));
    printf("devinfo_size=%zu\nserial=%s\nlabel=%s\nmanufacturer=%s\nasym=0x%08X\n", sizeof info, info.SerialNumber, info.Label,
           info.Manufacturer, info.AlgAsymCap);

    char apps[256];
    size = sizeof apps;
    CALL(EnumApplication(dev, apps, &size));
    CALL(OpenApplication(dev, apps, &app));
    ULONG retries = 99;
    ULONG rv = VerifyPIN(app, USER_TYPE, "000000", &retries);
    printf("wrong_pin_rv=0x%08X\nwrong_pin_retries=%u\n", rv, retries);
    CALL(VerifyPIN(app, USER_TYPE, argv[2], &retries));

    char containers[1024];
    size = sizeof containers;
    CALL(EnumContainer(app, containers, &size));
    printf("container=%s\n", containers);
    CALL(OpenContainer(app, containers, &con));
    ULONG type = 0;
    CALL(GetContainerType(con, &type));
    printf("container_type=%u\n", type);

    ECCPUBLICKEYBLOB pub;
    size = sizeof pub;
    CALL(ExportPublicKey(con, 1, (unsigned char *)&pub, &size));
    printf("pub_bits=%u\n", pub.BitLen);
    hex("pub_x", pub.XCoordinate + 32, 32);
    hex("pub_y", pub.YCoordinate + 32, 32);
    size = 0;
    CALL(ExportCertificate(con, 1, NULL, &size));
    unsigned char *cert = malloc(size);
    CALL(ExportCertificate(con, 1, cert, &size));
    hex("cert", cert, size);

    unsigned char e[32];
    for (int i = 0; i < 32; i++) sscanf(argv[3] + 2 * i, "%2hhx", &e[i]);
    ECCSIGNATUREBLOB sig;
    CALL(ECCSignData(con, e, 32, &sig));
    hex("sig_r_pad", sig.r, 32);
    hex("sig_r", sig.r + 32, 32);
    hex("sig_s", sig.s + 32, 32);

    CALL(CloseContainer(con));
    CALL(CloseApplication(app));
    CALL(DisConnectDev(dev));
    printf("done=1\n");
    return 0;
}

/*
 * avx2_only.c — make a process see this CPU as an AVX2-only one (no AVX-512, no VNNI, no AMX), natively.
 *
 * Loaded with LD_PRELOAD by scripts/avx2_only.py. Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID,
 * the "cpuid_fault" flag of /proc/cpuinfo) makes every CPUID instruction of the process trap; the SIGSEGV
 * handler below runs the real CPUID, clears the AVX-512, VNNI and AMX feature bits, and resumes after the
 * instruction. Libraries that choose their kernels by CPUID (ONNX Runtime's MLAS, NumPy, OpenBLAS) then
 * take their AVX2 code paths at the real core's speed — unlike emulation, times mean something. Reads of
 * /proc/cpuinfo (which sparkvision uses to pick an int8 model's weight range) get the same flags removed,
 * so the process sees one consistent CPU.
 *
 * The setting is per thread and inherited by threads and forked children; exec resets it and LD_PRELOAD
 * sets it again. A later SIGSEGV handler (a JVM, Python's faulthandler) would receive the traps instead:
 * use it for NumPy / ONNX Runtime processes, not for Spark.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static int cpuid_faulting(int on) { return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

/* Bits cleared: leaf 7.0 EBX AVX512 F/DQ/IFMA/PF/ER/CD/BW/VL; ECX AVX512 VBMI/VBMI2/VNNI/BITALG/VPOPCNTDQ;
 * EDX AVX512 4VNNIW/4FMAPS/VP2INTERSECT/FP16, AMX BF16/TILE/INT8; leaf 7.1 EAX AVX-VNNI, AVX512 BF16,
 * AMX FP16/COMPLEX; EDX AVX-VNNI-INT8, AVX-NE-CONVERT, AVX-VNNI-INT16. */
static void mask(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    if (leaf == 7 && sub == 0) {
        *b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) |
                (1u << 31));
        *c &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        *d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        *a &= ~((1u << 4) | (1u << 5) | (1u << 21) | (1u << 8));
        *d &= ~((1u << 4) | (1u << 5) | (1u << 10));
    }
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = (ucontext_t *)context;
    greg_t *r = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)r[REG_RIP];
    (void)info;
    if (ip == NULL || ip[0] != 0x0f || ip[1] != 0xa2) { /* a real fault: die as usual */
        signal(sig, SIG_DFL);
        return; /* the faulting instruction runs again and kills the process with the default action */
    }
    uint32_t leaf = (uint32_t)r[REG_RAX], sub = (uint32_t)r[REG_RCX], a, b, c, d;
    cpuid_faulting(0);
    __cpuid_count(leaf, sub, a, b, c, d);
    cpuid_faulting(1);
    mask(leaf, sub, &a, &b, &c, &d);
    r[REG_RAX] = a;
    r[REG_RBX] = b;
    r[REG_RCX] = c;
    r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

static const char *const HIDDEN_PREFIXES[] = {"avx512", "avx_vnni", "amx", NULL};

static int hidden(const char *flag, size_t n) {
    for (const char *const *p = HIDDEN_PREFIXES; *p; ++p)
        if (n >= strlen(*p) && strncmp(flag, *p, strlen(*p)) == 0) return 1;
    return 0;
}

/* /proc/cpuinfo with the hidden flags removed from every "flags" line, in a memfd. */
static int masked_cpuinfo(void) {
    FILE *in = fopen("/proc/cpuinfo", "re");
    int fd = (int)syscall(SYS_memfd_create, "cpuinfo", 0);
    if (in == NULL || fd < 0) {
        if (in) fclose(in);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, in)) > 0) {
        if (strncmp(line, "flags", 5) != 0) {
            if (write(fd, line, (size_t)len) != len) break;
            continue;
        }
        char *colon = strchr(line, ':');
        if (colon == NULL) continue;
        if (write(fd, line, (size_t)(colon + 1 - line)) < 0) break;
        for (char *tok = strtok(colon + 1, " \n"); tok; tok = strtok(NULL, " \n")) {
            if (hidden(tok, strlen(tok))) continue;
            if (write(fd, " ", 1) < 0 || write(fd, tok, strlen(tok)) < 0) break;
        }
        if (write(fd, "\n", 1) < 0) break;
    }
    free(line);
    fclose(in);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static int is_cpuinfo(const char *path) { return path && strcmp(path, "/proc/cpuinfo") == 0; }

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);

/* The mode argument of open/openat, present only when a file may be created. */
#define MODE_ARG(flags, last)                     \
    mode_t mode = 0;                              \
    if ((flags) & (O_CREAT | O_TMPFILE)) {        \
        va_list ap;                               \
        va_start(ap, last);                       \
        mode = va_arg(ap, mode_t);                \
        va_end(ap);                               \
    }

/* A masked /proc/cpuinfo for a read-only open of it, else -1 (open the real path). */
static int cpuinfo_instead(const char *path, int flags) {
    return is_cpuinfo(path) && !(flags & (O_WRONLY | O_RDWR)) ? masked_cpuinfo() : -1;
}

#define OPEN_WRAPPER(NAME)                                      \
    int NAME(const char *path, int flags, ...) {                \
        static open_fn real;                                    \
        MODE_ARG(flags, flags)                                  \
        int fd = cpuinfo_instead(path, flags);                  \
        if (fd >= 0) return fd;                                 \
        if (!real) real = (open_fn)dlsym(RTLD_NEXT, #NAME);     \
        return real(path, flags, mode);                         \
    }

#define OPENAT_WRAPPER(NAME)                                    \
    int NAME(int dirfd, const char *path, int flags, ...) {     \
        static openat_fn real;                                  \
        MODE_ARG(flags, flags)                                  \
        int fd = cpuinfo_instead(path, flags);                  \
        if (fd >= 0) return fd;                                 \
        if (!real) real = (openat_fn)dlsym(RTLD_NEXT, #NAME);   \
        return real(dirfd, path, flags, mode);                  \
    }

OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

__attribute__((constructor)) static void start_masking(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    if (cpuid_faulting(1) != 0) {
        static const char msg[] = "avx2_only: this kernel/CPU does not support CPUID faulting\n";
        if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
        _exit(3);
    }
}

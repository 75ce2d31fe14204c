/* SPDX-License-Identifier: MIT */
/* machine.c: machine ID and public IP detection. */
#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>

#include "log.h"
#include "machine.h"

int fl_machine_id_read(const char *path, char **ret) {
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        FILE *f;
        char *s;

        f = fopen(path ?: FL_MACHINE_ID_PATH, "re");
        if (!f)
                return -errno;
        n = getdelim(&line, &cap, '\0', f);
        fclose(f);
        if (n <= 0)
                return -ENOMSG;
        s = line;
        while (isspace((unsigned char) *s))
                s++;
        while (n > 0 && (line[n - 1] == 0 || isspace((unsigned char) line[n - 1])))
                line[--n] = 0;
        if (!*s)
                return -ENOMSG;
        s = strdup(s);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int fl_machine_default_route_iface(const char *path, char **ret) {
        _cleanup_free_ char *line = NULL, *best = NULL;
        unsigned long best_metric = 0;
        size_t cap = 0;
        FILE *f;

        f = fopen(path ?: "/proc/net/route", "re");
        if (!f)
                return -errno;
        /* "Iface Destination Gateway Flags RefCnt Use Metric Mask ...", hex in host order. */
        while (getline(&line, &cap, f) > 0) {
                char iface[64];
                unsigned long dest, gw, flags, refcnt, use, metric, mask;

                if (sscanf(line, "%63s %lx %lx %lx %lu %lu %lu %lx", iface, &dest, &gw, &flags, &refcnt, &use,
                           &metric, &mask) != 8)
                        continue; /* header */
                if (dest != 0 || mask != 0 || !(flags & RTF_UP))
                        continue;
                if (best && metric >= best_metric)
                        continue;
                free(best);
                best = strdup(iface);
                if (!best) {
                        fclose(f);
                        return -ENOMEM;
                }
                best_metric = metric;
        }
        fclose(f);
        if (!best)
                return -ENOENT;
        *ret = TAKE_PTR(best);
        return 0;
}

/* Go's net.IP.IsGlobalUnicast for IPv4 (private ranges count as global). */
static bool ipv4_is_global_unicast(uint32_t a) {
        return a != 0 &&                          /* 0.0.0.0 */
               a != UINT32_C(0xffffffff) &&       /* limited broadcast */
               (a >> 24) != 127 &&                /* loopback */
               (a >> 16) != UINT32_C(0xa9fe) &&   /* 169.254/16 link-local */
               (a >> 28) != 0xe;                  /* 224/4 multicast */
}

int fl_machine_iface_ipv4(const char *iface, char **ret) {
        struct ifaddrs *ifs = NULL;
        char buf[INET_ADDRSTRLEN];
        int r = -EADDRNOTAVAIL;

        if (getifaddrs(&ifs) < 0)
                return -errno;
        for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *) i->ifa_addr;

                if (!sin || sin->sin_family != AF_INET || !streq(i->ifa_name, iface))
                        continue;
                if (!ipv4_is_global_unicast(ntohl(sin->sin_addr.s_addr)))
                        continue;
                if (!inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)))
                        continue;
                *ret = strdup(buf);
                r = *ret ? 0 : -ENOMEM;
                break;
        }
        freeifaddrs(ifs);
        return r;
}

int fl_machine_detect_public_ip(char **ret) {
        _cleanup_free_ char *iface = NULL;
        int r;

        r = fl_machine_default_route_iface(NULL, &iface);
        if (r < 0)
                return log_debug_errno(r, "No IPv4 default route: %m");
        r = fl_machine_iface_ipv4(iface, ret);
        if (r < 0)
                return log_debug_errno(r, "No global IPv4 address on %s: %m", iface);
        return 0;
}

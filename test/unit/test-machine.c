/* SPDX-License-Identifier: MIT */
/* test-machine.c: machine ID file and default-route parsing. */
#include <stdio.h>

#include "machine.h"
#include "tests.h"

static char path[64];

static void remove_tmp(void) {
        if (path[0])
                (void) unlink(path);
}

static const char *write_tmp(const char *text) {
        FILE *f;
        int fd;

        if (path[0])
                (void) unlink(path);
        else
                atexit(remove_tmp);
        strcpy(path, "/tmp/fleet-test-machine.XXXXXX");
        fd = mkstemp(path);
        if (fd < 0)
                abort();
        f = fdopen(fd, "w");
        fputs(text, f);
        fclose(f);
        return path;
}

TEST(machine_id) {
        static const struct {
                const char *text, *want;
                int r;
        } cases[] = {
                { "3d1219c7c4c5404aaa1f6d2a48adfda4\n", "3d1219c7c4c5404aaa1f6d2a48adfda4", 0 },
                { "  abc \n\n", "abc", 0 },
                { "abc", "abc", 0 },
                { "", NULL, -ENOMSG },
                { " \n\t\n", NULL, -ENOMSG },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *id = NULL;
                int r = fl_machine_id_read(write_tmp(cases[i].text), &id);
                if (r != cases[i].r)
                        FAIL_AT("case %zu: r=%d, want %d", i, r, cases[i].r);
                if (r == 0)
                        ASSERT_STREQ(id, cases[i].want);
        }
        char *id = NULL;
        ASSERT_ERR(fl_machine_id_read("/nonexistent/machine-id", &id), -ENOENT);
}

TEST(default_route) {
        static const struct {
                const char *text, *want;
                int r;
        } cases[] = {
                { "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
                  "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
                  "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
                  "eth0", 0 },
                /* Lowest metric wins; routes that are down or not default are ignored. */
                { "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
                  "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
                  "eth1\t00000000\t0101A8C0\t0002\t0\t0\t10\t00000000\t0\t0\t0\n"
                  "eth9\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n"
                  "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n",
                  "eth0", 0 },
                { "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
                  "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
                  NULL, -ENOENT },
                { "", NULL, -ENOENT },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *iface = NULL;
                int r = fl_machine_default_route_iface(write_tmp(cases[i].text), &iface);
                if (r != cases[i].r)
                        FAIL_AT("case %zu: r=%d, want %d", i, r, cases[i].r);
                if (r == 0)
                        ASSERT_STREQ(iface, cases[i].want);
        }
}

TEST(loopback_has_no_public_ip) {
        _cleanup_free_ char *ip = NULL;
        ASSERT_ERR(fl_machine_iface_ipv4("lo", &ip), -EADDRNOTAVAIL);
        ASSERT_ERR(fl_machine_iface_ipv4("no-such-iface0", &ip), -EADDRNOTAVAIL);
}

TEST(detect_public_ip) {
        _cleanup_free_ char *ip = NULL;
        int r = fl_machine_detect_public_ip(&ip);
        if (r == -ENOENT || r == -EADDRNOTAVAIL)
                SKIP("no IPv4 default route with a global address here");
        ASSERT_OK(r);
        ASSERT_NOT_NULL(ip);
        ASSERT_TRUE(strncmp(ip, "127.", 4) != 0);
}

TEST_MAIN(T(machine_id), T(default_route), T(loopback_has_no_public_ip), T(detect_public_ip))

/* SPDX-License-Identifier: MIT */
/* machine.h: this machine's identity for fleetd (spec §2.5): the machine ID from
 * /etc/machine-id and the public IP of the interface carrying the default route. */
#pragma once

#include "macro.h"

#define FL_MACHINE_ID_PATH "/etc/machine-id"

/* Contents of path (NULL: FL_MACHINE_ID_PATH), whitespace-trimmed. -ENOMSG when empty. */
int fl_machine_id_read(const char *path, char **ret);

/* Interface of the IPv4 default route with the lowest metric, from a /proc/net/route style
 * file (path NULL: /proc/net/route). -ENOENT when there is no default route. */
int fl_machine_default_route_iface(const char *path, char **ret);

/* First IPv4 global-unicast address (not loopback, link-local, multicast, broadcast or
 * unspecified) of iface, as a dotted quad. -EADDRNOTAVAIL when it has none. */
int fl_machine_iface_ipv4(const char *iface, char **ret);

/* Both of the above: the address fleet publishes when public_ip is not configured. */
int fl_machine_detect_public_ip(char **ret);

/* SPDX-License-Identifier: MIT */
/* ctl-cat.c: cat (spec §1.6): the unit's canonical text as stored in the cluster. */
#include <stdio.h>

#include "ctl.h"
#include "unit-name.h"

int fl_ctl_verb_cat(Ctl *c, int argc, char **argv) {
        _cleanup_(fl_api_unit_done) ApiUnit u = {};
        _cleanup_free_ char *name = NULL, *text = NULL;
        CtlDriver *d;
        int r;

        if (argc != 2) {
                log_error("One unit file must be provided");
                return 1;
        }
        name = fl_unit_name_mangle(argv[1]);
        if (!name)
                return log_oom();
        if (fl_ctl_driver(c, &d) < 0)
                return 1;
        r = d->ops->get_unit(d, name, &u);
        if (r == -ENOENT) {
                log_error("Unit %s not found", name);
                return 1;
        }
        if (r < 0) {
                log_error("Error retrieving Unit %s: %s", name, strempty(d->error));
                return 1;
        }
        text = fl_unit_file_serialize(u.file);
        if (!text)
                return log_oom();
        return fl_ctl_print(text) < 0 ? 1 : 0;
}

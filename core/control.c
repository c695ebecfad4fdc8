/* control — the clock and the stop test of core/control.h. */
#include "core/control.h"

#include <stddef.h>
#include <time.h>

double bs_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

bs_stop bs_should_stop(const bs_control *ctl)
{
    if (!ctl)
        return BS_STOP_NONE;
    if (ctl->cancel && atomic_load(ctl->cancel))
        return BS_STOP_CANCELLED;
    if (ctl->deadline > 0.0 && bs_now() > ctl->deadline)
        return BS_STOP_DEADLINE;
    return BS_STOP_NONE;
}

bs_control bs_control_quiet(const bs_control *ctl)
{
    if (!ctl)
        return (bs_control){0};
    return (bs_control){.deadline = ctl->deadline, .cancel = ctl->cancel};
}

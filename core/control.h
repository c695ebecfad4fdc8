/* control — how the owner of a job steers it while it runs: a deadline on
 * the monotonic clock, a cancel flag another thread may raise, and a
 * progress callback. Every kind of long work takes one (attacks,
 * evaluations, the empirical Lipschitz bound, the daemon's worker jobs), so
 * the command line and the daemon stop and watch all of them alike.
 *
 * Work checks bs_should_stop between its units (an attack between model
 * evaluations, an evaluation between attacks), never inside one, and
 * returns what it has with a status saying it was stopped. */
#ifndef BS_CONTROL_H
#define BS_CONTROL_H

#include <stdatomic.h>

/* A job's deadline, cancel flag and progress; every field is optional (a
 * zeroed struct, or a NULL pointer to one, never stops and reports
 * nothing). The work only reads it. */
typedef struct bs_control {
    double deadline;          /* bs_now() seconds after which to stop; 0 = none */
    const atomic_int *cancel; /* non-zero asks the work to stop; NULL = never */
    /* Called with ctx after each finished unit of the work, on the thread
     * that finished it and never on a hot path: done of total units so
     * far. What a unit is belongs to the work: an attack reports each
     * target's inner runs (its c or eps search steps; done counts that
     * target's runs, total is search_steps), an evaluation its attacks. */
    void (*progress)(void *ctx, int done, int total);
    void *ctx;
} bs_control;

/* Why work stopped early, as bs_should_stop sees it. */
typedef enum bs_stop {
    BS_STOP_NONE,      /* go on */
    BS_STOP_DEADLINE,  /* the deadline passed */
    BS_STOP_CANCELLED, /* the cancel flag was raised */
} bs_stop;

/* Monotonic clock in seconds, for deadlines. */
double bs_now(void);

/* Whether the work should stop now: cancel first, then the deadline. ctl
 * may be NULL. */
bs_stop bs_should_stop(const bs_control *ctl);

/* The same control without its progress callback: what work hands to
 * the inner work it runs, whose units are not its own. */
bs_control bs_control_quiet(const bs_control *ctl);

#endif

/* team — a fork-join team of threads that one caller lends to the work of
 * one model evaluation (core/model.h: a workspace may carry one).
 *
 * The threads are made once, by bs_team_new, and wait between runs: each
 * spins a little on the next run's number (a forward pass starts its ops
 * microseconds apart) and then sleeps on a condition variable. A run hands
 * out task numbers 0..tasks-1, the caller included: thread i (the caller
 * 0) takes task i first, so that work split the same way run after run
 * stays in the same cores' caches, and any task left goes to whichever
 * thread asks first. It returns when every task is done. Nothing allocates in a
 * run. Which thread runs which task changes from run to run, so a task
 * must write only its own part of the output and compute it the same way
 * whatever thread runs it: then results never depend on the team.
 *
 * One thread at a time calls bs_team_run on a team. */
#ifndef BS_TEAM_H
#define BS_TEAM_H

#define BS_TEAM_MAX 64 /* threads of one team, the caller counted */

typedef struct bs_team bs_team;

/* A team of threads (1..BS_TEAM_MAX, the caller counted: threads - 1 are
 * made); NULL when threads is out of range or they cannot be made. */
bs_team *bs_team_new(int threads);
/* Stops and joins the threads; NULL is allowed. Not during a run. */
void bs_team_free(bs_team *t);

/* The threads a run may use, the caller counted. */
int bs_team_threads(const bs_team *t);

/* Calls fn(ctx, k) once for every k in 0..tasks-1, spread over the team's
 * threads and the caller's, and returns when all have returned. */
void bs_team_run(bs_team *t, int tasks, void (*fn)(void *ctx, int task), void *ctx);

#endif

/* scratch — a growable arena for the buffers of one call, owned by the
 * caller and passed in, and a model workspace kept between calls.
 *
 * A thread that runs many attacks (a daemon worker, an evaluation thread,
 * the command line) owns one bs_scratch for its life and hands it to every
 * call. A call marks the arena, carves its buffers (bs_scratch_alloc) and
 * releases them at the mark when it returns. The first calls grow the
 * arena (in chunks, each as large as all before it); a release back to an
 * empty arena replaces its chunks by one of the most any call needed, and
 * from then on calls of that size allocate nothing.
 *
 * The workspace (bs_workspace_new's, as it is) is re-made only when the
 * model or the batch it must hold changes. A model is known by its address
 * and by the scratch's generation: the owner names the models it may use
 * with a generation number (bs_scratch_generation) and changes it when
 * one of them may have been freed, since another model can then come back
 * at the same address; the workspace of the old generation is freed then.
 * A caller whose models live as long as the scratch never needs to.
 *
 * One thread at a time uses a scratch. */
#ifndef BS_SCRATCH_H
#define BS_SCRATCH_H

#include "core/model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bs_scratch bs_scratch;

/* An empty scratch (no arena yet, no workspace); NULL when out of memory. */
bs_scratch *bs_scratch_new(void);
/* Frees the arena and the workspace; NULL is allowed. */
void bs_scratch_free(bs_scratch *s);

/* The arena's position, to release back to. */
size_t bs_scratch_mark(const bs_scratch *s);
/* Gives back everything carved since mark (buffers carved later go first:
 * marks nest like a stack). */
void bs_scratch_release(bs_scratch *s, size_t mark);
/* bytes of zeroed memory aligned to 64 bytes, valid until a release to a
 * mark taken before it; NULL when out of memory. */
void *bs_scratch_alloc(bs_scratch *s, size_t bytes);
/* count elements of size bytes each, zeroed; NULL when out of memory. */
#define bs_scratch_array(s, count, type) \
    ((type *)bs_scratch_alloc((s), (size_t)(count) * sizeof(type)))

/* Declares the generation of the models the next calls use (see the top
 * of the file); a change frees the workspace kept for another one. */
void bs_scratch_generation(bs_scratch *s, uint64_t generation);
/* A workspace for model m with room for batch samples, in inference mode
 * (training 0): the one kept when it was made for m in this generation
 * with room enough, else a new one that is kept instead. Valid until the
 * next call with another model or a larger batch, a change of generation,
 * or bs_scratch_free. NULL when out of memory. */
bs_workspace *bs_scratch_workspace(bs_scratch *s, const bs_model *m, int batch);

/* Lends team (NULL for none) to the workspaces bs_scratch_workspace
 * returns from now on: their models' forward and backward split big
 * products among its threads, with the bits of one thread. The team is
 * not owned and must outlive its use here. */
void bs_scratch_team(bs_scratch *s, bs_team *team);

/* Allocations the scratch has made since bs_scratch_new (arena blocks and
 * workspaces): what a test compares before and after a call. */
long bs_scratch_allocations(const bs_scratch *s);

#endif

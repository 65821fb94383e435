/*
 * shm/provider_token.c - the shared provider token's lock.
 *
 * The mutex is robust: a worker killed while it holds it must not wedge the
 * others.  The next locker makes it consistent and throws the token away,
 * because the dead holder may have been half way through writing it.
 */
#include "provider_token.h"

#include "robust_mutex.h"

#include <errno.h>

int provider_token_init(struct provider_token *t)
{
    int err = robust_mutex_init(&t->lock);

    atomic_store(&t->gen, 0);
    t->len = 0;
    return err;
}

static int taken(struct provider_token *t, int err)
{
    if (err == EOWNERDEAD) {
        t->len = 0;
        atomic_store(&t->published, atomic_load(&t->gen)); /* nothing to publish: the fleet may bring one */
        err = pthread_mutex_consistent(&t->lock);
    }
    return -err;
}

int provider_token_lock(struct provider_token *t)
{
    return taken(t, pthread_mutex_lock(&t->lock));
}

int provider_token_trylock(struct provider_token *t)
{
    return taken(t, pthread_mutex_trylock(&t->lock));
}

void provider_token_unlock(struct provider_token *t)
{
    pthread_mutex_unlock(&t->lock);
}

/* list.h: intrusive doubly linked list (embedded nodes, circular with a head). */
#ifndef SY_CORE_LIST_H
#define SY_CORE_LIST_H

#include <stddef.h>

struct sy_list {
    struct sy_list *prev, *next;
};

#define SY_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void sy_list_init(struct sy_list *h)
{
    h->prev = h->next = h;
}

static inline int sy_list_empty(const struct sy_list *h)
{
    return h->next == h;
}

static inline int sy_list_linked(const struct sy_list *n)
{
    return n->next != NULL && n->next != n;
}

static inline void sy_list_insert_tail(struct sy_list *h, struct sy_list *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void sy_list_insert_head(struct sy_list *h, struct sy_list *n)
{
    n->next = h->next;
    n->prev = h;
    h->next->prev = n;
    h->next = n;
}

static inline void sy_list_remove(struct sy_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#endif

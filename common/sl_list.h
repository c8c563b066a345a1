/* Intrusive circular doubly linked list (the UCS/Linux kernel idiom). */
#ifndef SL_LIST_H
#define SL_LIST_H

#include <stddef.h>

typedef struct sl_list {
    struct sl_list *prev; /* previous element, or the head */
    struct sl_list *next; /* next element, or the head */
} sl_list_t;

#define SL_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void sl_list_init(sl_list_t *head)
{
    head->prev = head->next = head;
}

static inline int sl_list_empty(const sl_list_t *head)
{
    return head->next == head;
}

static inline void sl_list_insert_after(sl_list_t *pos, sl_list_t *elem)
{
    elem->prev = pos;
    elem->next = pos->next;
    pos->next->prev = elem;
    pos->next = elem;
}

static inline void sl_list_push_back(sl_list_t *head, sl_list_t *elem)
{
    sl_list_insert_after(head->prev, elem);
}

static inline void sl_list_push_front(sl_list_t *head, sl_list_t *elem)
{
    sl_list_insert_after(head, elem);
}

static inline void sl_list_del(sl_list_t *elem)
{
    elem->prev->next = elem->next;
    elem->next->prev = elem->prev;
    elem->prev = elem->next = elem;
}

/* Remove and return the first element, or NULL when empty. */
static inline sl_list_t *sl_list_pop_front(sl_list_t *head)
{
    sl_list_t *e = head->next;
    if (e == head)
        return NULL;
    sl_list_del(e);
    return e;
}

#define sl_list_for_each(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)
#define sl_list_for_each_safe(pos, tmp, head)                                                      \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                               \
         (pos) = (tmp), (tmp) = (pos)->next)

#endif

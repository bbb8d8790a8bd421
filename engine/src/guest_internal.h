/*
** What guest.c (the operations) needs from guest_agent.c (the protocol
** client). Not a public header.
*/
#ifndef ORR_GUEST_INTERNAL_H
#define ORR_GUEST_INTERNAL_H

#include "orrery/guest.h"

/* The absolute deadline (uv_hrtime() nanoseconds) of something that may
** take timeout_ms (0: the command timeout of g's options). */
uint64_t orr__guest_deadline(const orr_guest *g, uint64_t timeout_ms);

/*
** Queues command (arguments stolen, may be NULL) to be answered before
** deadline; with delay_ms it joins the queue only that much later (exec's
** polls wait that way, so that closing g cancels them like any command).
** cb runs exactly once, from the loop.
*/
void orr__guest_send(orr_guest *g, const char *command, json_t *arguments,
                     uint64_t deadline, uint64_t delay_ms, orr_vm_cb cb,
                     void *arg);

/* Fails cb from the loop (never from inside the caller's call). */
void orr__guest_fail(orr_guest *g, int status, const char *msg, orr_vm_cb cb,
                     void *arg);

#endif

/*
 * DN_EXPORT: the part of _lib's C API that another extension calls.
 *
 * _lib is built with -fvisibility=hidden (lwIP's and our internals stay
 * private to it). The native benchmark loops (bench._dnbench, built from
 * the checkout only) drive the stack through these functions: the bench
 * runner loads _lib with RTLD_GLOBAL so they resolve to the one copy, the
 * one lwIP and the one error slot. An extension that compiles its own copy
 * of a file (_fcpath) defines DN_EXPORT empty to keep it private.
 */
#ifndef DN_EXPORT_H
#define DN_EXPORT_H

#ifndef DN_EXPORT
#define DN_EXPORT __attribute__((visibility("default")))
#endif

#endif /* DN_EXPORT_H */

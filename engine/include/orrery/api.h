/*
** ORR_API marks the public C API. liborrery is compiled with
** -fvisibility=hidden, so these declarations are the only symbols it
** exports; internal orr__ functions stay inside the library.
*/
#ifndef ORRERY_API_H
#define ORRERY_API_H

#if defined(__GNUC__) || defined(__clang__)
#define ORR_API __attribute__((visibility("default")))
#else
#define ORR_API
#endif

#endif

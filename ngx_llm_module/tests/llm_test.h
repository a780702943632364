
/*
 * Copyright (C) ngx_llm authors
 *
 * Helpers shared by the cmocka units.
 */


#ifndef _LLM_TEST_H_INCLUDED_
#define _LLM_TEST_H_INCLUDED_


#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>


#define LLM_TEST_SLOTS  16
#define LLM_TEST_SIZE   16384


/*
 * JSON written with single quotes in C source: returns a copy with every
 * ' turned into ". A few copies stay valid at once (a ring of buffers).
 */

static inline const char *
J(const char *s)
{
    char           *d;
    size_t          i, n;
    static char     ring[LLM_TEST_SLOTS][LLM_TEST_SIZE];
    static unsigned next;

    n = strlen(s);
    assert_true(n < LLM_TEST_SIZE);

    d = ring[next++ % LLM_TEST_SLOTS];

    for (i = 0; i <= n; i++) {
        d[i] = (s[i] == '\'') ? '"' : s[i];
    }

    return d;
}


#endif /* _LLM_TEST_H_INCLUDED_ */

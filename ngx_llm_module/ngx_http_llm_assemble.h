
/*
 * Copyright (C) ngx_llm authors
 *
 * Response cache, pure C (no nginx dependency): the complete message of an
 * answer assembled from its stream deltas or read from its JSON body, its
 * compact encoding (the cache entry), and its rendering back as a JSON
 * response or as an SSE stream in the client API's own format.
 *
 * Strings are kept as JSON string bodies, still escaped, exactly as
 * upstream wrote them: deltas concatenate without decoding (a surrogate
 * pair split across two deltas stays a pair) and render without encoding.
 * The one exception is an Anthropic tool_use input, kept as the raw JSON
 * value it is in a message (decoded from its partial_json deltas).
 */


#ifndef _NGX_HTTP_LLM_ASSEMBLE_H_INCLUDED_
#define _NGX_HTTP_LLM_ASSEMBLE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ngx_http_llm_event.h"


#define NGX_HTTP_LLM_MSG_MAX_PARTS      32

/* message parts */
#define NGX_HTTP_LLM_PART_TEXT          1   /* content text */
#define NGX_HTTP_LLM_PART_TOOL          2   /* tool / function call */

/* entry kinds */
#define NGX_HTTP_LLM_ENTRY_MESSAGE      1   /* assembled message */
#define NGX_HTTP_LLM_ENTRY_RAW          2   /* JSON body kept as is
                                               (embeddings) */


/* grows buffers: like realloc(), old is the bytes to keep */
typedef void *(*ngx_http_llm_grow_pt)(void *data, void *p, size_t old,
    size_t size);


typedef struct {
    u_char                     *data;
    size_t                      len;
    size_t                      cap;
} ngx_http_llm_abuf_t;


typedef struct {
    unsigned                    type;
    int64_t                     index;      /* stream index (tool / block) */
    ngx_http_llm_abuf_t         id;
    ngx_http_llm_abuf_t         name;
    ngx_http_llm_abuf_t         text;       /* content, arguments, input */
    unsigned                    escaped;    /* input still as partial_json */
} ngx_http_llm_part_t;


typedef struct {
    int                         api;
    unsigned                    kind;       /* NGX_HTTP_LLM_ENTRY_* */
    ngx_http_llm_abuf_t         id;
    ngx_http_llm_abuf_t         model;
    ngx_http_llm_abuf_t         finish;     /* finish / stop reason */
    ngx_http_llm_abuf_t         stop_seq;   /* Anthropic stop_sequence */
    ngx_http_llm_abuf_t         raw;        /* ENTRY_RAW body */
    int64_t                     created;
    ngx_http_llm_usage_t        usage;      /* set by the caller */

    unsigned                    nparts;
    ngx_http_llm_part_t         parts[NGX_HTTP_LLM_MSG_MAX_PARTS];

    /* why the answer cannot be cached, or NULL */
    const char                 *uncacheable;

    ngx_http_llm_grow_pt        grow;
    void                       *data;
} ngx_http_llm_msg_t;


void ngx_http_llm_msg_init(ngx_http_llm_msg_t *msg, int api,
    ngx_http_llm_grow_pt grow, void *data);

/*
 * Feeds one SSE event of the answer (name may be empty). Returns 0, or -1
 * once msg->uncacheable is set (an unsupported part, an error, no memory):
 * the following calls do nothing.
 */
int ngx_http_llm_msg_event(ngx_http_llm_msg_t *msg, const u_char *name,
    size_t name_len, const u_char *data, size_t len);

/* Reads a complete JSON answer. 0, or -1 with msg->uncacheable set. */
int ngx_http_llm_msg_response(ngx_http_llm_msg_t *msg, const u_char *body,
    size_t len);

/*
 * Completes the message after the last event (decodes Anthropic tool
 * inputs); 0, or -1 with msg->uncacheable set.
 */
int ngx_http_llm_msg_finish(ngx_http_llm_msg_t *msg);


/*
 * The encoded entry: a versioned, length-prefixed byte string. Encodes
 * into out when cap is enough; returns the size needed either way.
 */
size_t ngx_http_llm_msg_encode(const ngx_http_llm_msg_t *msg, u_char *out,
    size_t cap);


typedef struct {
    const u_char               *data;
    size_t                      len;
} ngx_http_llm_estr_t;


typedef struct {
    unsigned                    type;
    ngx_http_llm_estr_t         id;
    ngx_http_llm_estr_t         name;
    ngx_http_llm_estr_t         text;
} ngx_http_llm_epart_t;


/* a decoded entry: pointers into the encoded bytes */
typedef struct {
    int                         api;
    unsigned                    kind;
    ngx_http_llm_estr_t         id;
    ngx_http_llm_estr_t         model;
    ngx_http_llm_estr_t         finish;
    ngx_http_llm_estr_t         stop_seq;
    ngx_http_llm_estr_t         raw;
    int64_t                     created;
    ngx_http_llm_usage_t        usage;
    unsigned                    has_stop_seq:1;
    unsigned                    nparts;
    ngx_http_llm_epart_t        parts[NGX_HTTP_LLM_MSG_MAX_PARTS];
} ngx_http_llm_entry_t;


/* 0, or -1 if the bytes are not a valid entry */
int ngx_http_llm_entry_decode(ngx_http_llm_entry_t *e, const u_char *p,
    size_t len);

/*
 * Renders the entry as the JSON response of its API into out when cap is
 * enough; returns the size needed either way.
 */
size_t ngx_http_llm_render_json(const ngx_http_llm_entry_t *e, u_char *out,
    size_t cap);


/* SSE replay, one event at a time */
typedef struct {
    const ngx_http_llm_entry_t *entry;
    size_t                      chunk;      /* content bytes per event */
    unsigned                    include_usage:1;
    unsigned                    stage;
    unsigned                    part;
    size_t                      off;
    uint64_t                    events;
} ngx_http_llm_replay_t;


/*
 * chunk: content bytes per delta event (at least 1; deltas are cut after
 * a space when one is near, never inside an escape sequence or a UTF-8
 * character); include_usage: OpenAI usage chunk wanted.
 */
void ngx_http_llm_replay_init(ngx_http_llm_replay_t *rp,
    const ngx_http_llm_entry_t *e, size_t chunk, unsigned include_usage);

/* the largest event ngx_http_llm_replay_next() can produce */
size_t ngx_http_llm_replay_max(const ngx_http_llm_replay_t *rp);

/*
 * Writes the next event into out (cap >= ngx_http_llm_replay_max());
 * returns its length, 0 when the stream is over. *content is set to 1
 * for an event that carries content (paced replays wait after those).
 */
size_t ngx_http_llm_replay_next(ngx_http_llm_replay_t *rp, u_char *out,
    size_t cap, unsigned *content);


#endif /* _NGX_HTTP_LLM_ASSEMBLE_H_INCLUDED_ */

/*
 * Small libpq helpers shared by everything that talks to PostgreSQL (the
 * postgres destination, the control plane, the run ledger).
 *
 * They connect with a timeout and a clear message naming host and port, run a
 * statement and turn its failure into an sl_err with PostgreSQL's message, and
 * quote identifiers with PQescapeIdentifier. Values are never interpolated
 * into SQL: pass them as parameters or COPY them. A small per-process pool
 * keeps a few idle connections for the next open of the same kind
 * (sl_pg_pool_get), so that a service that opens and closes connections
 * often (the publisher, per run) does not pay a connection each time.
 */
#ifndef SLUICE_PG_H
#define SLUICE_PG_H

#include <stddef.h>

#include <libpq-fe.h>

#include "sluice/buf.h"

/* Seconds a connection attempt may take unless conninfo sets connect_timeout. */
#define SL_PG_CONNECT_TIMEOUT 10

/* Connects to conninfo (a libpq URI "postgresql://..." or keyword string
 * "host=... port=..."; "" uses libpq's defaults and PG* environment). Sets
 * connect_timeout to timeout_s seconds unless conninfo gives one, client
 * encoding UTF8 and application_name "sluice" (unless given), and silences
 * server notices (logged at debug level). Returns the connection (caller
 * PQfinish()es it), or NULL with errbuf set to "could not connect to
 * postgresql at HOST:PORT: reason" (never the password). Any thread. */
PGconn *sl_pg_connect(const char *conninfo, int timeout_s, char *errbuf, size_t errsz);

/* "host:port" that conninfo names (after PGHOST/PGPORT and libpq's defaults: the socket directory
 * /var/run/postgresql, port 5432) into out, for messages; never fails (out is cut to outsz). */
void sl_pg_where(const char *conninfo, char *out, size_t outsz);

/* Runs sql with n text parameters (params[i] NULL: SQL NULL). On success
 * returns 0 and, when res is not NULL, the result in *res (caller
 * PQclear()s it). On failure returns the sl_err of the failure
 * (sl_pg_error_class) with errbuf set to "cannot WHAT: <postgresql's
 * message>", and *res NULL. */
int sl_pg_exec(PGconn *conn, const char *what, const char *sql, int n, const char *const *params,
               PGresult **res, char *errbuf, size_t errsz);

/* The sl_err of a failed result (res may be NULL: the connection's state):
 * SL_ERR_RETRY for a lost connection, serialization failures, deadlocks, lack
 * of resources and server shutdown; SL_ERR_INVALID for data the server
 * refused (SQLSTATE classes 22 and 23); SL_ERR_FATAL for the rest. */
int sl_pg_error_class(PGconn *conn, const PGresult *res);

/* PostgreSQL's message of res (or of the connection when res is NULL), its
 * first line without the trailing newline, into out. */
void sl_pg_message(PGconn *conn, const PGresult *res, char *out, size_t outsz);

/* Appends name quoted as an SQL identifier ("my ""table""") to b. Returns 0,
 * SL_ERR_NOMEM, or SL_ERR_INVALID when name is not valid in the connection's
 * encoding. */
int sl_pg_put_ident(struct sl_buf *b, PGconn *conn, const char *name);

/* Idle connections kept by the pool at most (the oldest goes first), and
 * how long one may wait there before it is closed. */
#define SL_PG_POOL_MAX    4
#define SL_PG_POOL_IDLE_S 60

/* An idle connection to conninfo that was given back with the same tag, or
 * NULL (connect then). The tag names the session state the giver left (e.g.
 * a sink's temporary tables and prepared statement for one job version and
 * table): only a taker that expects that state asks for it. The caller owns
 * the connection (sl_pg_pool_put or PQfinish). Any thread. */
PGconn *sl_pg_pool_get(const char *conninfo, const char *tag);

/* Gives conn (NULL: nothing) back to the pool under (conninfo, tag) when it
 * is healthy and outside any transaction, else, or when it cannot be kept,
 * PQfinish()es it. Ownership passes to the pool either way. Any thread. */
void sl_pg_pool_put(PGconn *conn, const char *conninfo, const char *tag);

/* Connections the pool holds now, and how many sl_pg_pool_get() handed out
 * since the process started (tests, metrics). */
size_t sl_pg_pool_idle(void);
unsigned long long sl_pg_pool_reused(void);

/* Closes every idle connection (at exit, or in tests). */
void sl_pg_pool_clear(void);

#endif

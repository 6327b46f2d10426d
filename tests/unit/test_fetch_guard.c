/*
 * Unit test of the SSRF guard (fetch_guard.c, source.h): which addresses are
 * no public Internet addresses and why, the allow-list's syntax and matching
 * (ranges, IPv4-mapped forms, host names), and a libcurl handle set up by
 * sl_curl_setup() refusing loopback, private and metadata addresses before
 * any connection is made, with the guard's reason as the error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/source.h"

/* The address text as a sockaddr (IPv4 or IPv6). */
static const struct sockaddr *addr(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
    } else {
        if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
            fail_msg("bad test address %s", text);
        s6->sin6_family = AF_INET6;
    }
    return (const struct sockaddr *)ss;
}

static const char *cls(const char *text)
{
    struct sockaddr_storage ss;
    return sl_addr_class(addr(text, &ss));
}

static void expect_class(const char *text, const char *part)
{
    const char *c = cls(text);
    if (!c)
        fail_msg("%s was taken for a public address (expected %s)", text, part);
    if (!strstr(c, part))
        fail_msg("%s: class '%s' does not say '%s'", text, c, part);
}

static void test_classes(void **state)
{
    expect_class("127.0.0.1", "loopback");
    expect_class("127.255.0.9", "loopback");
    expect_class("10.1.2.3", "private (10.0.0.0/8)");
    expect_class("172.16.0.1", "private (172.16.0.0/12)");
    expect_class("172.31.255.255", "private");
    expect_class("192.168.1.1", "private (192.168.0.0/16)");
    expect_class("169.254.169.254", "cloud metadata");
    expect_class("169.254.1.1", "link-local");
    expect_class("100.64.0.1", "carrier-grade NAT");
    expect_class("100.127.255.254", "carrier-grade NAT");
    expect_class("100.100.100.200", "carrier-grade NAT"); /* Alibaba's metadata */
    expect_class("0.0.0.0", "this network");
    expect_class("192.0.0.192", "IETF"); /* Oracle's metadata */
    expect_class("224.0.0.1", "multicast");
    expect_class("255.255.255.255", "reserved");
    expect_class("198.18.0.1", "benchmarking");
    expect_class("::1", "loopback");
    expect_class("::", "unspecified");
    expect_class("::ffff:127.0.0.1", "IPv4-mapped");
    expect_class("::ffff:8.8.8.8", "IPv4-mapped");
    expect_class("::127.0.0.1", "IPv4-compatible");
    expect_class("fe80::1", "link-local");
    expect_class("fd00::1", "unique local");
    expect_class("fd00:ec2::254", "cloud metadata");
    expect_class("fc00::5", "unique local");
    expect_class("ff02::1", "multicast");
    expect_class("64:ff9b::10.0.0.1", "NAT64");
    expect_class("2002:0a00:0001::1", "6to4");
    expect_class("2001:db8::1", "documentation");
    /* public ones */
    assert_null(cls("8.8.8.8"));
    assert_null(cls("1.1.1.1"));
    assert_null(cls("100.63.255.255"));
    assert_null(cls("100.128.0.0"));
    assert_null(cls("172.32.0.1"));
    assert_null(cls("169.253.255.255"));
    assert_null(cls("2606:4700:4700::1111"));
    assert_null(cls("64:ff9b::8.8.8.8"));
    assert_null(cls("2002:0808:0808::1"));
}

static void expect_bad_list(const char *list, const char *part)
{
    char err[256] = "";
    struct sl_fetch_guard *g = sl_fetch_guard_new(list, err, sizeof(err));
    if (g) {
        sl_fetch_guard_destroy(g);
        fail_msg("'%s' was accepted", list);
    }
    if (!strstr(err, part))
        fail_msg("'%s': message '%s' does not say '%s'", list, err, part);
    assert_non_null(strstr(err, "SLUICE_ALLOW_HOSTS"));
}

static void test_allow_list_syntax(void **state)
{
    char err[256];
    struct sl_fetch_guard *g = sl_fetch_guard_new(NULL, err, sizeof(err));
    assert_non_null(g);
    sl_fetch_guard_destroy(g);
    g = sl_fetch_guard_new(" 127.0.0.1/32 , ::1,[fd00::]/8,10.0.0.0/8,files.internal, ,", err,
                           sizeof(err));
    if (!g)
        fail_msg("%s", err);
    sl_fetch_guard_destroy(g);
    expect_bad_list("127.0.0.1/33", "at most 32 bits");
    expect_bad_list("::1/129", "at most 128 bits");
    expect_bad_list("10.0.0.0/x", "bad prefix length");
    expect_bad_list("10.0.0.0/", "bad prefix length");
    expect_bad_list("files.internal/24", "no IP address, CIDR or host name");
    expect_bad_list("not a host", "no IP address, CIDR or host name");
    expect_bad_list("http://x", "no IP address, CIDR or host name");
    sl_fetch_guard_destroy(NULL);
}

static int check(const struct sl_fetch_guard *g, const char *text, char *why, size_t n)
{
    struct sockaddr_storage ss;
    why[0] = '\0';
    return sl_fetch_guard_check(g, addr(text, &ss), why, n);
}

static void test_allow_list_matching(void **state)
{
    char err[256], why[512];
    struct sl_fetch_guard *none = sl_fetch_guard_new("", err, sizeof(err));
    struct sl_fetch_guard *g =
        sl_fetch_guard_new("127.0.0.1/32,10.20.0.0/16,fd00:1::/32,localhost", err, sizeof(err));
    assert_non_null(none);
    assert_non_null(g);

    assert_int_equal(check(none, "8.8.8.8", why, sizeof(why)), 0);
    assert_int_equal(check(none, "127.0.0.1", why, sizeof(why)), SL_ERR_INVALID);
    assert_non_null(strstr(why, "refused to connect to 127.0.0.1"));
    assert_non_null(strstr(why, "loopback"));
    assert_non_null(strstr(why, "SLUICE_ALLOW_HOSTS"));
    assert_int_equal(check(none, "169.254.169.254", why, sizeof(why)), SL_ERR_INVALID);
    assert_non_null(strstr(why, "cloud metadata"));
    assert_int_equal(check(none, "::ffff:127.0.0.1", why, sizeof(why)), SL_ERR_INVALID);
    assert_non_null(strstr(why, "IPv4-mapped"));

    assert_int_equal(check(g, "127.0.0.1", why, sizeof(why)), 0);
    assert_int_equal(check(g, "::ffff:127.0.0.1", why, sizeof(why)), 0); /* the same host */
    assert_int_equal(check(g, "127.0.0.2", why, sizeof(why)), SL_ERR_INVALID);
    assert_int_equal(check(g, "10.20.3.4", why, sizeof(why)), 0);
    assert_int_equal(check(g, "10.21.0.1", why, sizeof(why)), SL_ERR_INVALID);
    assert_non_null(strstr(why, "private (10.0.0.0/8)"));
    assert_int_equal(check(g, "fd00:1:2::3", why, sizeof(why)), 0);
    assert_int_equal(check(g, "fd00:2::3", why, sizeof(why)), SL_ERR_INVALID);
    assert_int_equal(check(g, "169.254.169.254", why, sizeof(why)), SL_ERR_INVALID);
    /* "localhost" allows what it resolves to: ::1 (from /etc/hosts, when it
     * lists it) but not the rest of 127.0.0.0/8 */
    assert_int_equal(check(g, "127.0.0.3", why, sizeof(why)), SL_ERR_INVALID);
    sl_fetch_guard_destroy(g);
    g = sl_fetch_guard_new("localhost", err, sizeof(err));
    assert_int_equal(check(g, "127.0.0.1", why, sizeof(why)), 0);
    sl_fetch_guard_destroy(g);
    sl_fetch_guard_destroy(none);
}

/* A GET of url through a guarded handle without allow-list: the error. */
static CURLcode guarded_get(const char *url, char *msg, size_t n)
{
    char err[256];
    struct sl_curl_ctx ctx = {0};
    ctx.guard = sl_fetch_guard_new(NULL, err, sizeof(err));
    assert_non_null(ctx.guard);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct sl_curl_opts o = {.protocols = "http,https", .connect_timeout = 2, .timeout = 5};
    assert_int_equal(sl_curl_setup(c, &o, &ctx, err, sizeof(err)), 0);
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_URL, url);
    CURLcode rc = curl_easy_perform(c);
    snprintf(msg, n, "%s", sl_curl_error(rc, &ctx, cerr));
    curl_easy_cleanup(c);
    sl_fetch_guard_destroy((struct sl_fetch_guard *)ctx.guard);
    return rc;
}

static void test_curl_refuses(void **state)
{
    static const struct {
        const char *url, *part;
    } cases[] = {
        {"http://127.0.0.1:1/", "loopback"},
        {"http://localhost:1/x.csv", "loopback"},
        {"http://10.255.255.1/", "private (10.0.0.0/8)"},
        {"http://169.254.169.254/latest/meta-data/", "cloud metadata"},
        {"http://[::ffff:127.0.0.1]:1/", "IPv4-mapped"},
        {"http://[::1]:1/", "loopback"},
        {"http://0x7f000001:1/", "loopback"},
        {"http://2130706433:1/", "loopback"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char msg[512];
        CURLcode rc = guarded_get(cases[i].url, msg, sizeof(msg));
        if (rc != CURLE_COULDNT_CONNECT || !strstr(msg, cases[i].part) ||
            !strstr(msg, "refused to connect"))
            fail_msg("%s: %d %s", cases[i].url, (int)rc, msg);
    }
    /* protocols other than the source's are refused by libcurl */
    char msg[512];
    CURLcode rc = guarded_get("file:///etc/passwd", msg, sizeof(msg));
    assert_int_equal(rc, CURLE_UNSUPPORTED_PROTOCOL);
    rc = guarded_get("gopher://127.0.0.1:1/", msg, sizeof(msg));
    assert_int_equal(rc, CURLE_UNSUPPORTED_PROTOCOL);
}

static void test_url_redact(void **state)
{
    char out[256];
    sl_url_redact("https://user:pw@host.example/a?b=c", out, sizeof(out));
    assert_string_equal(out, "https://***@host.example/a?b=c");
    sl_url_redact("https://host.example/a@b", out, sizeof(out));
    assert_string_equal(out, "https://host.example/a@b");
    sl_url_redact("http://${env:U}:${env:P}@h/x", out, sizeof(out));
    assert_string_equal(out, "http://***@h/x");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_allow_list_syntax),
        cmocka_unit_test(test_allow_list_matching),
        cmocka_unit_test(test_curl_refuses),
        cmocka_unit_test(test_url_redact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

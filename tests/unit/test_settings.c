/*
 * The configuration (settings.c): the config file's format, the precedence
 * flag > environment > file > default, the values exported to the
 * environment, and errors naming FILE:LINE without ever showing a value.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/service.h"

static char dir[] = "/tmp/sluice-test-settings-XXXXXX";
static char path[600];
static char errtext[4096];

/* Every variable the tests set, unset before each. */
static const char *const vars[] = {
    "SLUICE_TOPIC_PREFIX",
    "SLUICE_KAFKA_BROKERS",
    "SLUICE_CONFIG",
    "SLUICE_LOG_LEVEL",
    "SLUICE_HASH_KEY",
    "SLUICE_SMTP_PASSWORD",
    "SLUICE_HTTP_ADDR",
    "SLUICE_WEBHOOK_SECRET_ORDERS",
    "SLUICE_ADMIN_TOKEN",
    "SLUICE_GROUP",
    "TMPDIR",
};

static int setup(void **state)
{
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    return 0;
}

static void write_file(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* sl_config_read() with stderr captured into errtext. */
static int read_cfg(struct sl_config *cfg, unsigned program, int argc, char **argv)
{
    fflush(stderr);
    int saved = dup(2);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    dup2(fileno(tmp), 2);
    int rc = sl_config_read(cfg, "test", program, argc, argv, NULL);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(errtext, 1, sizeof(errtext) - 1, tmp);
    errtext[n] = '\0';
    fclose(tmp);
    return rc;
}

static void test_default(void **state)
{
    struct sl_config c;
    char *argv[] = {"test"};
    assert_int_equal(read_cfg(&c, SL_PROG_SERVICE, 1, argv), 0);
    assert_string_equal(sl_config_get(&c, "SLUICE_TOPIC_PREFIX"), "sluice.");
    assert_null(sl_config_get(&c, "SLUICE_GROUP"));
    /* a default is not exported: the deep readers keep their own */
    assert_null(getenv("SLUICE_TOPIC_PREFIX"));
    sl_config_cleanup(&c);
}

static void test_precedence(void **state)
{
    struct sl_config c;
    write_file("SLUICE_TOPIC_PREFIX=file.\nSLUICE_KAFKA_BROKERS=file:1\nSLUICE_GROUP=g-file\n");
    char *argv[] = {"test", "--config", path, "--kafka-brokers=flag:1", "--group", "g-flag"};
    setenv("SLUICE_KAFKA_BROKERS", "env:1", 1);
    setenv("SLUICE_GROUP", "g-env", 1);
    /* file over default */
    assert_int_equal(read_cfg(&c, SL_PROG_SERVICE, 3, argv), 0);
    assert_string_equal(sl_config_get(&c, "SLUICE_TOPIC_PREFIX"), "file.");
    assert_string_equal(getenv("SLUICE_TOPIC_PREFIX"), "file."); /* exported */
    /* environment over file */
    assert_string_equal(sl_config_get(&c, "SLUICE_KAFKA_BROKERS"), "env:1");
    assert_string_equal(getenv("SLUICE_KAFKA_BROKERS"), "env:1");
    char src[80];
    assert_string_equal(sl_config_source(&c, "SLUICE_KAFKA_BROKERS", src, sizeof(src)),
                        "SLUICE_KAFKA_BROKERS in the environment");
    sl_config_cleanup(&c);
    /* flag over environment (and exported: the deep readers see the flag) */
    unsetenv("SLUICE_TOPIC_PREFIX");
    assert_int_equal(read_cfg(&c, SL_PROG_SERVICE, 6, argv), 0);
    assert_string_equal(sl_config_get(&c, "SLUICE_KAFKA_BROKERS"), "flag:1");
    assert_string_equal(getenv("SLUICE_KAFKA_BROKERS"), "flag:1");
    assert_string_equal(sl_config_get(&c, "SLUICE_GROUP"), "g-flag");
    assert_string_equal(sl_config_get(&c, "SLUICE_TOPIC_PREFIX"), "file.");
    /* where each came from, for a message about its value */
    char want[700];
    char src2[700];
    assert_string_equal(sl_config_source(&c, "SLUICE_KAFKA_BROKERS", src2, sizeof(src2)),
                        "--kafka-brokers");
    snprintf(want, sizeof(want), "SLUICE_TOPIC_PREFIX in %s:1", path);
    assert_string_equal(sl_config_source(&c, "SLUICE_TOPIC_PREFIX", src2, sizeof(src2)), want);
    assert_string_equal(sl_config_source(&c, "SLUICE_LOG_LEVEL", src2, sizeof(src2)),
                        "--log-level, the default");
    assert_string_equal(sl_config_source(&c, "SLUICE_FILE_DIRS", src2, sizeof(src2)),
                        "SLUICE_FILE_DIRS");
    sl_config_cleanup(&c);
    /* SLUICE_CONFIG names the file when no --config does; an empty
     * variable is unset, so the file's value counts */
    unsetenv("SLUICE_TOPIC_PREFIX");
    setenv("SLUICE_CONFIG", path, 1);
    setenv("SLUICE_GROUP", "", 1);
    assert_int_equal(read_cfg(&c, SL_PROG_SERVICE, 1, argv), 0);
    assert_string_equal(sl_config_get(&c, "SLUICE_TOPIC_PREFIX"), "file.");
    assert_string_equal(sl_config_get(&c, "SLUICE_GROUP"), "g-file");
    assert_string_equal(sl_config_get(&c, "SLUICE_CONFIG"), path);
    sl_config_cleanup(&c);
}

static void test_format(void **state)
{
    struct sl_config c;
    write_file("# a comment\n"
               "\n"
               "   # an indented comment\n"
               "SLUICE_TOPIC_PREFIX=\"a b#c\"  \r\n"
               "SLUICE_KAFKA_BROKERS='x:1,y:2'\n"
               "  SLUICE_HASH_KEY=k#ey with spaces=and equals \n"
               "SLUICE_GROUP=\n"
               "SLUICE_LOG_LEVEL=\"\"\n"
               "TMPDIR=$HOME/tmp"); /* no newline at the end, no expansion */
    char *argv[] = {"test", "--config", path};
    assert_int_equal(read_cfg(&c, SL_PROG_SERVICE, 3, argv), 0);
    assert_string_equal(sl_config_get(&c, "SLUICE_TOPIC_PREFIX"), "a b#c");
    assert_string_equal(sl_config_get(&c, "SLUICE_KAFKA_BROKERS"), "x:1,y:2");
    assert_string_equal(sl_config_get(&c, "SLUICE_HASH_KEY"), "k#ey with spaces=and equals");
    assert_null(sl_config_get(&c, "SLUICE_GROUP"));                     /* empty: unset */
    assert_string_equal(sl_config_get(&c, "SLUICE_LOG_LEVEL"), "info"); /* the default */
    assert_string_equal(sl_config_get(&c, "TMPDIR"), "$HOME/tmp");
    sl_config_cleanup(&c);
}

/* rc 2 and a message holding want (FILE:LINE: ...) but not the secret. */
static void expect_error(unsigned program, const char *text, const char *want)
{
    struct sl_config c;
    write_file(text);
    char *argv[] = {"test", "--config", path};
    assert_int_equal(read_cfg(&c, program, 3, argv), 2);
    char full[1200];
    snprintf(full, sizeof(full), "test: %s:%s", path, want);
    if (!strstr(errtext, full))
        fail_msg("expected '%s' in '%s'", full, errtext);
    assert_null(strstr(errtext, "hunter2"));
    sl_config_cleanup(&c);
}

static void test_errors(void **state)
{
    expect_error(SL_PROG_SERVICE, "# x\nSLUICE_LOG_LEVEL=info\n\nSLUICE_KAFKA_BROKER=hunter2\n",
                 "4: unknown setting 'SLUICE_KAFKA_BROKER' (did you mean "
                 "'SLUICE_KAFKA_BROKERS'?)");
    expect_error(SL_PROG_SERVICE, "PGPASSWORD=hunter2\n", "1: unknown setting 'PGPASSWORD'");
    expect_error(SL_PROG_SERVICE, "SLUICE_HASH_KEY hunter2\n", "1: malformed line");
    expect_error(SL_PROG_SERVICE, "SLUICE_HASH_KEY = hunter2\n", "1: malformed line");
    expect_error(SL_PROG_SERVICE, "export SLUICE_HASH_KEY=hunter2\n", "1: malformed line");
    expect_error(SL_PROG_SERVICE, "SLUICE_HASH_KEY=\"hunter2\n",
                 "1: SLUICE_HASH_KEY: the quote \" is not closed");
    expect_error(SL_PROG_SERVICE, "SLUICE_HASH_KEY='hunter2\"\n",
                 "1: SLUICE_HASH_KEY: the quote ' is not closed");
    expect_error(SL_PROG_SERVICE, "SLUICE_HASH_KEY=a\nSLUICE_HASH_KEY=hunter2\n",
                 "2: SLUICE_HASH_KEY is set twice (first at line 1)");
    expect_error(SL_PROG_GATEWAY, "SLUICE_WEBHOOK_SECRET_A=x\n#\nSLUICE_WEBHOOK_SECRET_A=hunter2\n",
                 "3: SLUICE_WEBHOOK_SECRET_A is set twice (first at line 1)");
    expect_error(SL_PROG_SERVICE, "SLUICE_CONFIG=/etc/hunter2\n",
                 "1: SLUICE_CONFIG cannot be set in a config file");
    /* a flag of another program is no flag of this one */
    struct sl_config c;
    char *argv[] = {"test", "--http-addr", "x"};
    assert_int_equal(read_cfg(&c, SL_PROG_SERVICE, 3, argv), 2);
    assert_non_null(strstr(errtext, "test: unknown option '--http-addr'"));
    sl_config_cleanup(&c);
    /* a misspelt flag: the closest one, and never its value */
    char *argv1[] = {"test", "--hash-kye=hunter2"};
    assert_int_equal(read_cfg(&c, SL_PROG_SERVICE, 2, argv1), 2);
    assert_non_null(strstr(errtext, "test: unknown option '--hash-kye' (did you mean "
                                    "'--hash-key'?) (see --help)"));
    assert_null(strstr(errtext, "hunter2"));
    sl_config_cleanup(&c);
    char *argv2[] = {"test", "--config"};
    assert_int_equal(read_cfg(&c, SL_PROG_SERVICE, 2, argv2), 2);
    assert_non_null(strstr(errtext, "option '--config' needs a value"));
    sl_config_cleanup(&c);
    char *argv3[] = {"test", "--config", "/nonexistent/sluice.env"};
    assert_int_equal(read_cfg(&c, SL_PROG_SERVICE, 3, argv3), 2);
    assert_non_null(strstr(errtext, "config file /nonexistent/sluice.env: No such file"));
    sl_config_cleanup(&c);
}

/* One file for every program: another program's keys are accepted and
 * ignored; a pattern key is exported for the program that reads it. */
static void test_shared_file(void **state)
{
    struct sl_config c;
    write_file("SLUICE_HTTP_ADDR=127.0.0.1:1\nSLUICE_WEBHOOK_SECRET_ORDERS=wh-secret\n"
               "SLUICE_ADMIN_TOKEN=admin-token-0123456789\nSLUICE_SMTP_PASSWORD=smtp-pw\n");
    char *argv[] = {"test", "--config", path};
    assert_int_equal(read_cfg(&c, SL_PROG_SERVICE, 3, argv), 0);
    assert_null(getenv("SLUICE_HTTP_ADDR"));
    assert_null(getenv("SLUICE_WEBHOOK_SECRET_ORDERS"));
    assert_null(getenv("SLUICE_ADMIN_TOKEN"));
    /* a secret without a flag, from the file, for the deep reader (mail.c) */
    assert_string_equal(getenv("SLUICE_SMTP_PASSWORD"), "smtp-pw");
    sl_config_cleanup(&c);
    unsetenv("SLUICE_SMTP_PASSWORD");
    assert_int_equal(read_cfg(&c, SL_PROG_GATEWAY, 3, argv), 0);
    assert_string_equal(sl_config_get(&c, "SLUICE_HTTP_ADDR"), "127.0.0.1:1");
    assert_string_equal(sl_config_get(&c, "SLUICE_ADMIN_TOKEN"), "admin-token-0123456789");
    assert_string_equal(getenv("SLUICE_WEBHOOK_SECRET_ORDERS"), "wh-secret");
    assert_null(getenv("SLUICE_SMTP_PASSWORD"));
    sl_config_cleanup(&c);
    /* the environment wins over the file for a pattern key too */
    setenv("SLUICE_WEBHOOK_SECRET_ORDERS", "from-env", 1);
    assert_int_equal(read_cfg(&c, SL_PROG_GATEWAY, 3, argv), 0);
    assert_string_equal(getenv("SLUICE_WEBHOOK_SECRET_ORDERS"), "from-env");
    sl_config_cleanup(&c);
    /* secrets have no flag */
    char *argv2[] = {"test", "--admin-token", "x"};
    assert_int_equal(read_cfg(&c, SL_PROG_GATEWAY, 3, argv2), 2);
    sl_config_cleanup(&c);
}

/* Every row is well formed: a flag of each one not a secret, unique names
 * and flags, --help prints each of a program's rows. */
static void test_table(void **state)
{
    for (size_t i = 0; i < sl_settings_count; i++) {
        const struct sl_setting *s = &sl_settings[i];
        assert_non_null(s->env);
        assert_non_null(s->help);
        assert_non_null(s->read_by);
        assert_true(s->programs != 0);
        assert_null(strchr(s->help, '|'));
        assert_null(strchr(s->read_by, '|'));
        if (s->flag)
            assert_int_equal(strncmp(s->flag, "--", 2), 0);
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(s->env, sl_settings[j].env);
            if (s->flag && sl_settings[j].flag)
                assert_string_not_equal(s->flag, sl_settings[j].flag);
        }
    }
}

int main(void)
{
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/sluice.env", dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_default, setup),
        cmocka_unit_test_setup(test_precedence, setup),
        cmocka_unit_test_setup(test_format, setup),
        cmocka_unit_test_setup(test_errors, setup),
        cmocka_unit_test_setup(test_shared_file, setup),
        cmocka_unit_test_setup(test_table, setup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(path);
    rmdir(dir);
    return rc;
}

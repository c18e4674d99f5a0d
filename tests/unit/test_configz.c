/* SPDX-License-Identifier: Apache-2.0 */
/* /configz: kube-proxy's shape ({"kubeproxy.config.k8s.io": the internal
 * KubeProxyConfiguration with Go field names and Go durations}) filled with
 * nlproxy's effective settings. */
#include "testutil.h"

#include <jansson.h>

#include "configz.h"
#include "options.h"

static json_t *configz_of(int argc, char **argv, const char *mode)
{
        struct options o;
        char err[512], *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        json_error_t e;
        json_t *j, *inner;

        assert_non_null(f);
        if (options_parse(argc, argv, &o, err, sizeof(err)) != 0)
                fail_msg("options_parse: %s", err);
        assert_int_equal(configz_write(&o, mode, f), 0);
        assert_int_equal(fclose(f), 0);
        options_free(&o);
        /* encoding/json is compact: one line, no spaces. */
        assert_null(strchr(buf, '\n'));
        assert_null(strstr(buf, "\": "));
        j = json_loads(buf, 0, &e);
        if (!j)
                fail_msg("not JSON: %s", e.text);
        free(buf);
        assert_int_equal(json_object_size(j), 1);
        inner = json_incref(json_object_get(j, "kubeproxy.config.k8s.io"));
        assert_non_null(inner);
        json_decref(j);
        return inner;
}

#define GET(j, ...) json_object_get(j, __VA_ARGS__)
#define STR(j, k) json_string_value(GET(j, k))
#define INT(j, k) json_integer_value(GET(j, k))

static void test_go_durations(void **state)
{
        static const struct {
                uint64_t ms;
                const char *go;
        } cases[] = {
                { 0, "0s" },           { 1, "1ms" },         { 500, "500ms" },        { 1000, "1s" },
                { 1500, "1.5s" },      { 1250, "1.25s" },    { 30000, "30s" },        { 90000, "1m30s" },
                { 900000, "15m0s" },   { 3600000, "1h0m0s" }, { 86400000, "24h0m0s" }, { 3723500, "1h2m3.5s" },
                { 3601001, "1h0m1.001s" },
        };
        char buf[48];

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                configz_go_duration(cases[i].ms, buf, sizeof(buf));
                assert_string_equal(buf, cases[i].go);
        }
}

static void test_defaults(void **state)
{
        char *argv[] = { "nlproxy", "--hostname-override", "node-a", NULL };
        json_t *c = configz_of(3, argv, "nftables"), *ct, *cc;
        const char *keys[] = { "FeatureGates", "ClientConnection", "Logging", "HostnameOverride", "BindAddress",
                               "HealthzBindAddress", "MetricsBindAddress", "BindAddressHardFail", "EnableProfiling",
                               "ShowHiddenMetricsForVersion", "Mode", "IPTables", "IPVS", "Winkernel", "NFTables",
                               "DetectLocalMode", "DetectLocal", "ClusterCIDR", "NodePortAddresses", "OOMScoreAdj",
                               "Conntrack", "ConfigSyncPeriod", "PortRange" };
        const char *k;
        json_t *v;
        size_t i = 0;

        (void)state;
        /* Every field of kube-proxy's struct, in its order. */
        json_object_foreach(c, k, v) {
                assert_true(i < sizeof(keys) / sizeof(keys[0]));
                assert_string_equal(k, keys[i]);
                i++;
        }
        assert_int_equal(i, sizeof(keys) / sizeof(keys[0]));
        assert_string_equal(STR(c, "Mode"), "nftables");
        assert_string_equal(STR(c, "HostnameOverride"), "node-a");
        assert_string_equal(STR(c, "HealthzBindAddress"), "0.0.0.0:10256");
        assert_string_equal(STR(c, "MetricsBindAddress"), "127.0.0.1:10249");
        assert_string_equal(STR(c, "BindAddress"), "0.0.0.0");
        assert_int_equal(INT(c, "OOMScoreAdj"), -999);
        assert_true(json_is_false(GET(c, "BindAddressHardFail")));
        assert_int_equal(json_object_size(GET(c, "FeatureGates")), 0);
        ct = GET(c, "Conntrack");
        assert_int_equal(INT(ct, "MaxPerCore"), 32768);
        assert_int_equal(INT(ct, "Min"), 131072);
        assert_string_equal(STR(ct, "TCPEstablishedTimeout"), "24h0m0s");
        assert_string_equal(STR(ct, "TCPCloseWaitTimeout"), "1h0m0s");
        assert_true(json_is_false(GET(ct, "TCPBeLiberal")));
        assert_string_equal(STR(ct, "UDPTimeout"), "0s");
        assert_string_equal(STR(ct, "UDPStreamTimeout"), "0s");
        assert_string_equal(STR(GET(c, "NFTables"), "SyncPeriod"), "30s");
        assert_string_equal(STR(GET(c, "NFTables"), "MinSyncPeriod"), "1s");
        assert_int_equal(INT(GET(c, "IPTables"), "MasqueradeBit"), 14);
        assert_string_equal(STR(GET(c, "IPVS"), "Scheduler"), "rr");
        assert_true(json_is_null(GET(GET(c, "IPVS"), "ExcludeCIDRs")));
        assert_string_equal(STR(GET(c, "Logging"), "format"), "text");
        assert_string_equal(json_string_value(json_array_get(GET(c, "NodePortAddresses"), 0)), "primary");
        assert_string_equal(STR(c, "ClusterCIDR"), "");
        assert_string_equal(STR(c, "DetectLocalMode"), "ClusterCIDR");
        cc = GET(c, "ClientConnection");
        assert_string_equal(STR(cc, "Kubeconfig"), "");
        assert_int_equal(INT(cc, "Burst"), 10);
        assert_string_equal(STR(c, "ConfigSyncPeriod"), "15m0s");
        json_decref(c);
}

static void test_effective_values(void **state)
{
        char *argv[] = { "nlproxy", "--mode", "ipvs", "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-close-wait",
                         "90m", "--conntrack-udp-timeout-stream=2m30s", "--conntrack-tcp-be-liberal",
                         "--oom-score-adj=-100", "--feature-gates", "TopologyAwareHints=false,AllAlpha=true",
                         "--cluster-cidr", "10.244.0.0/16,fd00:244::/56", "--nodeport-addresses", "10.0.0.0/8",
                         "--metrics-bind-address=", "--sync-period", "45s", "--min-sync-period", "500ms",
                         "--ipvs-exclude-cidrs", "fd00::/64,172.16.0.0/12", "--ipvs-tcp-timeout", "15m",
                         "--masquerade-all", "--kubeconfig", "/k.conf", "--node-ip", "192.0.2.7",
                         "--logging-format", "json", "-v", "2", "--bind-address-hard-fail", NULL };
        json_t *c = configz_of(sizeof(argv) / sizeof(argv[0]) - 1, argv, "ipvs"), *ct, *fg, *ipvs;
        const char *k;
        json_t *v;
        int i = 0;

        (void)state;
        assert_string_equal(STR(c, "Mode"), "ipvs");
        ct = GET(c, "Conntrack");
        assert_int_equal(INT(ct, "MaxPerCore"), 0);
        assert_string_equal(STR(ct, "TCPCloseWaitTimeout"), "1h30m0s");
        assert_string_equal(STR(ct, "UDPStreamTimeout"), "2m30s");
        assert_true(json_is_true(GET(ct, "TCPBeLiberal")));
        assert_int_equal(INT(c, "OOMScoreAdj"), -100);
        /* A Go map: sorted by name. */
        fg = GET(c, "FeatureGates");
        json_object_foreach(fg, k, v) {
                assert_string_equal(k, i == 0 ? "AllAlpha" : "TopologyAwareHints");
                assert_true(i == 0 ? json_is_true(v) : json_is_false(v));
                i++;
        }
        assert_int_equal(i, 2);
        assert_string_equal(STR(c, "ClusterCIDR"), "10.244.0.0/16,fd00:244::/56");
        assert_string_equal(json_string_value(json_array_get(GET(c, "NodePortAddresses"), 0)), "10.0.0.0/8");
        assert_int_equal(json_array_size(GET(c, "NodePortAddresses")), 1);
        assert_string_equal(STR(c, "MetricsBindAddress"), "");
        assert_string_equal(STR(c, "BindAddress"), "192.0.2.7");
        ipvs = GET(c, "IPVS");
        assert_string_equal(STR(ipvs, "SyncPeriod"), "45s");
        assert_string_equal(STR(ipvs, "MinSyncPeriod"), "500ms");
        assert_string_equal(STR(ipvs, "TCPTimeout"), "15m0s");
        assert_string_equal(json_string_value(json_array_get(GET(ipvs, "ExcludeCIDRs"), 0)), "172.16.0.0/12");
        assert_string_equal(json_string_value(json_array_get(GET(ipvs, "ExcludeCIDRs"), 1)), "fd00::/64");
        assert_true(json_is_true(GET(GET(c, "IPTables"), "MasqueradeAll")));
        assert_true(json_is_true(GET(GET(c, "NFTables"), "MasqueradeAll")));
        assert_string_equal(STR(GET(c, "ClientConnection"), "Kubeconfig"), "/k.conf");
        assert_string_equal(STR(GET(c, "Logging"), "format"), "json");
        assert_int_equal(INT(GET(c, "Logging"), "verbosity"), 2);
        assert_true(json_is_true(GET(c, "BindAddressHardFail")));
        json_decref(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_go_durations),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_effective_values),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}

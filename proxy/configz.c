/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "configz.h"

void configz_go_duration(uint64_t ms, char *buf, size_t len)
{
        uint64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
        char secs[32];

        if (ms == 0) {
                snprintf(buf, len, "0s");
                return;
        }
        if (ms < 1000) {
                snprintf(buf, len, "%llums", (unsigned long long)ms);
                return;
        }
        if (frac) {
                char f[8];
                int end;

                snprintf(f, sizeof(f), "%03llu", (unsigned long long)frac);
                for (end = 3; f[end - 1] == '0'; end--)
                        f[end - 1] = '\0';
                snprintf(secs, sizeof(secs), "%llu.%ss", (unsigned long long)s, f);
        } else {
                snprintf(secs, sizeof(secs), "%llus", (unsigned long long)s);
        }
        if (h)
                snprintf(buf, len, "%lluh%llum%s", (unsigned long long)h, (unsigned long long)m, secs);
        else if (m)
                snprintf(buf, len, "%llum%s", (unsigned long long)m, secs);
        else
                snprintf(buf, len, "%s", secs);
}

static json_t *dur(uint64_t ms)
{
        char buf[48];

        configz_go_duration(ms, buf, sizeof(buf));
        return json_string(buf);
}

static json_t *str0(const char *s) { return json_string(s ? s : ""); }

/* The CIDRs of both families, IPv4 first; NULL (JSON null, Go's nil slice)
 * when there is none. */
static json_t *cidr_list(const struct ipcidr *c4, size_t n4, const struct ipcidr *c6, size_t n6)
{
        json_t *a;

        if (n4 + n6 == 0)
                return json_null();
        a = json_array();
        for (size_t i = 0; a && i < n4 + n6; i++) {
                char buf[IPCIDR_STRLEN];

                json_array_append_new(a, json_string(ipcidr_format(i < n4 ? &c4[i] : &c6[i - n4], buf)));
        }
        return a;
}

static int gate_cmp(const void *a, const void *b)
{
        return strcmp(((const struct feature_gate_value *)a)->gate->name,
                      ((const struct feature_gate_value *)b)->gate->name);
}

/* json_object_set_new, remembering a value that could not be built. */
static void put(json_t *o, const char *key, json_t *v, bool *bad)
{
        if (!v || json_object_set_new(o, key, v) < 0)
                *bad = true;
}

static json_t *build(const struct options *o, const char *mode)
{
        const struct proxy_config *p = &o->proxy;
        const struct conntrack_config *ct = &o->conntrack;
        json_t *c = json_object(), *v, *fg = json_object();
        struct feature_gate_value *gates = NULL;
        char cidrs[1024] = "";
        bool bad = false;

        if (!c || !fg) {
                json_decref(c);
                json_decref(fg);
                return NULL;
        }
        /* encoding/json writes a map sorted by key. */
        if (o->n_gates) {
                gates = malloc(o->n_gates * sizeof(*gates));
                if (!gates) {
                        json_decref(c);
                        json_decref(fg);
                        return NULL;
                }
                memcpy(gates, o->gates, o->n_gates * sizeof(*gates));
                qsort(gates, o->n_gates, sizeof(*gates), gate_cmp);
                for (size_t i = 0; i < o->n_gates; i++)
                        json_object_set_new(fg, gates[i].gate->name, json_boolean(gates[i].value));
                free(gates);
        }
        put(c, "FeatureGates", fg, &bad);
        put(c, "ClientConnection",
                            json_pack("{s:o,s:s,s:s,s:i,s:i}", "Kubeconfig", str0(o->kubeconfig), "AcceptContentTypes",
                                      "", "ContentType", "application/vnd.kubernetes.protobuf", "QPS", 5, "Burst", 10), &bad);
        put(c, "Logging",
                            json_pack("{s:s,s:s,s:i,s:{s:{s:s},s:{s:s}}}", "format",
                                      o->log_format == OPT_LOG_JSON ? "json" : "text", "flushFrequency", "5s",
                                      "verbosity", o->verbosity, "options", "text", "infoBufferSize", "0", "json",
                                      "infoBufferSize", "0"), &bad);
        put(c, "HostnameOverride", str0(o->hostname), &bad);
        {
                /* --node-ip is kube-proxy's --bind-address. */
                const struct ipaddr *ip = o->node_ip[0].family ? &o->node_ip[0] : o->node_ip[1].family ? &o->node_ip[1] : NULL;
                char buf[IPADDR_STRLEN];

                put(c, "BindAddress", json_string(ip ? ipaddr_format(ip, buf) : "0.0.0.0"), &bad);
        }
        put(c, "HealthzBindAddress", str0(o->healthz.text), &bad);
        put(c, "MetricsBindAddress", str0(o->metrics.text), &bad);
        put(c, "BindAddressHardFail", json_boolean(o->bind_address_hard_fail), &bad);
        put(c, "EnableProfiling", json_false(), &bad);
        put(c, "ShowHiddenMetricsForVersion", json_string(""), &bad);
        put(c, "Mode", json_string(mode), &bad);
        put(c, "IPTables",
                            json_pack("{s:i,s:b,s:b,s:o,s:o}", "MasqueradeBit", (int)p->masquerade_bit, "MasqueradeAll",
                                      p->masquerade_all, "LocalhostNodePorts", 1, "SyncPeriod", dur(o->sync_period_ms),
                                      "MinSyncPeriod", dur(o->min_sync_period_ms)), &bad);
        {
                struct ipcidr ex4[16], ex6[16];
                size_t n4 = 0, n6 = 0;

                for (size_t i = 0; i < p->ipvs.n_exclude_cidrs && i < 16; i++) {
                        const struct ipcidr *e = &p->ipvs.exclude_cidrs[i];

                        if (e->addr.family == AF_INET6)
                                ex6[n6++] = *e;
                        else
                                ex4[n4++] = *e;
                }
                put(c, "IPVS",
                                    json_pack("{s:o,s:o,s:s,s:o,s:b,s:o,s:o,s:o}", "SyncPeriod", dur(o->sync_period_ms),
                                              "MinSyncPeriod", dur(o->min_sync_period_ms), "Scheduler",
                                              p->scheduler ? p->scheduler : "", "ExcludeCIDRs",
                                              cidr_list(ex4, n4, ex6, n6), "StrictARP", p->ipvs.strict_arp,
                                              "TCPTimeout", dur((uint64_t)p->ipvs.tcp_timeout * 1000), "TCPFinTimeout",
                                              dur((uint64_t)p->ipvs.tcpfin_timeout * 1000), "UDPTimeout",
                                              dur((uint64_t)p->ipvs.udp_timeout * 1000)), &bad);
        }
        put(c, "Winkernel",
                            json_pack("{s:s,s:s,s:b,s:s,s:b}", "NetworkName", "", "SourceVip", "", "EnableDSR", 0,
                                      "RootHnsEndpointName", "", "ForwardHealthCheckVip", 0), &bad);
        put(c, "NFTables",
                            json_pack("{s:i,s:b,s:o,s:o}", "MasqueradeBit", (int)p->masquerade_bit, "MasqueradeAll",
                                      p->masquerade_all, "SyncPeriod", dur(o->sync_period_ms), "MinSyncPeriod",
                                      dur(o->min_sync_period_ms)), &bad);
        put(c, "DetectLocalMode", json_string("ClusterCIDR"), &bad);
        put(c, "DetectLocal", json_pack("{s:s,s:s}", "BridgeInterface", "", "InterfaceNamePrefix", ""), &bad);
        /* A comma-separated string in the internal config. */
        for (int fi = 0; fi < 2; fi++) {
                for (size_t i = 0; i < p->n_cluster_cidr[fi]; i++) {
                        char buf[IPCIDR_STRLEN];
                        size_t l = strlen(cidrs);

                        snprintf(cidrs + l, sizeof(cidrs) - l, "%s%s", l ? "," : "",
                                 ipcidr_format(&p->cluster_cidr[fi][i], buf));
                }
        }
        put(c, "ClusterCIDR", json_string(cidrs), &bad);
        if (p->nodeport_primary)
                v = json_pack("[s]", "primary");
        else
                v = cidr_list(p->nodeport_cidr[0], p->n_nodeport_cidr[0], p->nodeport_cidr[1], p->n_nodeport_cidr[1]);
        put(c, "NodePortAddresses", v, &bad);
        put(c, "OOMScoreAdj", json_integer(o->oom_score_adj), &bad);
        put(c, "Conntrack",
                            json_pack("{s:i,s:i,s:o,s:o,s:b,s:o,s:o}", "MaxPerCore", (int)ct->max_per_core, "Min",
                                      (int)ct->min, "TCPEstablishedTimeout", dur((uint64_t)ct->tcp_established_s * 1000),
                                      "TCPCloseWaitTimeout", dur((uint64_t)ct->tcp_close_wait_s * 1000), "TCPBeLiberal",
                                      ct->tcp_be_liberal, "UDPTimeout", dur((uint64_t)ct->udp_s * 1000),
                                      "UDPStreamTimeout", dur((uint64_t)ct->udp_stream_s * 1000)), &bad);
        put(c, "ConfigSyncPeriod", json_string("15m0s"), &bad);
        put(c, "PortRange", json_string(""), &bad);
        if (bad) {
                json_decref(c);
                return NULL;
        }
        return c;
}

int configz_write(const struct options *o, const char *mode, FILE *out)
{
        json_t *cfg = build(o, mode), *root;
        int r;

        if (!cfg)
                return -ENOMEM;
        root = json_pack("{s:o}", "kubeproxy.config.k8s.io", cfg);
        if (!root)
                return -ENOMEM;
        r = json_dumpf(root, out, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(root);
        return r < 0 ? -EIO : 0;
}

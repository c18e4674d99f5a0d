/* SPDX-License-Identifier: Apache-2.0 */
#include "testutil.h"

#include <errno.h>
#include <netinet/in.h>

#include "k8s.h"

/* JSON with single quotes, to keep the test inputs readable. */
static json_t *J(const char *s)
{
        char *t = strdup(s);
        json_error_t e;
        json_t *v;

        assert_non_null(t);
        for (char *p = t; *p; p++)
                if (*p == '\'')
                        *p = '"';
        v = json_loads(t, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        if (!v)
                fail_msg("bad test JSON: %s: %s", e.text, t);
        free(t);
        return v;
}

static json_t *svc_json(const char *spec, const char *status)
{
        char buf[4096];

        snprintf(buf, sizeof(buf),
                 "{'apiVersion':'v1','kind':'Service','metadata':{'name':'svc1','namespace':'ns1'},'spec':%s%s%s}",
                 spec, status ? ",'status':" : "", status ? status : "");
        return J(buf);
}

static const char *fmt(const struct ipaddr *a)
{
        static char buf[4][IPADDR_STRLEN];
        static int i;

        i = (i + 1) % 4;
        return ipaddr_format(a, buf[i]);
}

/* ---- Service ---- */

static void test_service_full(void **state)
{
        json_t *o = J("{'apiVersion':'v1','kind':'Service',"
                      " 'metadata':{'name':'web','namespace':'prod','resourceVersion':'42',"
                      "  'labels':{'service.kubernetes.io/service-proxy-name':'nlproxy','service.kubernetes.io/headless':'',"
                      "   'app':'web'}},"
                      " 'spec':{'type':'LoadBalancer','clusterIP':'10.96.0.10','clusterIPs':['10.96.0.10','fd00::10'],"
                      "  'selector':{'app':'web'},"
                      "  'ports':[{'name':'http','protocol':'TCP','port':80,'targetPort':'http','nodePort':30080,"
                      "            'appProtocol':7},"
                      "           {'protocol':'UDP','port':53},{'name':'s','protocol':'SCTP','port':9999}],"
                      "  'externalIPs':['192.0.2.1','2001:db8::1'],"
                      "  'loadBalancerSourceRanges':[' 203.0.113.0/25','10.0.0.0/8 '],"
                      "  'externalTrafficPolicy':'Local','internalTrafficPolicy':'Local',"
                      "  'sessionAffinity':'ClientIP','sessionAffinityConfig':{'clientIP':{'timeoutSeconds':60}},"
                      "  'healthCheckNodePort':32000},"
                      " 'status':{'loadBalancer':{'ingress':[{'ip':'198.51.100.1'},{'ip':'198.51.100.2','ipMode':'Proxy'},"
                      "   {'hostname':'lb.example.com'},{'ip':'2001:db8::2','ipMode':'VIP'}]}}}");
        char err[K8S_ERRLEN] = "";
        char cbuf[IPCIDR_STRLEN];
        struct k8s_service *s = NULL;

        (void) state;
        assert_int_equal(k8s_service_decode(o, &s, err), 0);
        assert_non_null(s);
        assert_string_equal(s->ns, "prod");
        assert_string_equal(s->name, "web");
        assert_string_equal(s->resource_version, "42");
        assert_string_equal(s->proxy_name, "nlproxy");
        assert_true(s->headless_label);
        assert_int_equal(s->type, K8S_SVC_LOAD_BALANCER);
        assert_false(s->headless);
        assert_int_equal(s->n_cluster_ips, 2);
        assert_string_equal(fmt(&s->cluster_ips[0]), "10.96.0.10");
        assert_string_equal(fmt(&s->cluster_ips[1]), "fd00::10");

        assert_int_equal(s->n_ports, 3);
        assert_string_equal(s->ports[0].name, "http");
        assert_int_equal(s->ports[0].proto, IPPROTO_TCP);
        assert_int_equal(s->ports[0].port, 80);
        assert_int_equal(s->ports[0].node_port, 30080);
        assert_string_equal(s->ports[1].name, "");
        assert_int_equal(s->ports[1].proto, IPPROTO_UDP);
        assert_int_equal(s->ports[1].port, 53);
        assert_int_equal(s->ports[1].node_port, 0);
        assert_int_equal(s->ports[2].proto, IPPROTO_SCTP);
        assert_int_equal(s->ports[2].port, 9999);

        assert_int_equal(s->n_external_ips, 2);
        assert_string_equal(fmt(&s->external_ips[0]), "192.0.2.1");
        assert_string_equal(fmt(&s->external_ips[1]), "2001:db8::1");

        assert_int_equal(s->n_source_ranges, 2);
        assert_string_equal(ipcidr_format(&s->source_ranges[0], cbuf), "203.0.113.0/25");
        assert_string_equal(ipcidr_format(&s->source_ranges[1], cbuf), "10.0.0.0/8");

        assert_true(s->etp_local);
        assert_true(s->itp_local);
        assert_true(s->affinity_client_ip);
        assert_int_equal(s->affinity_timeout, 60);
        assert_int_equal(s->health_check_node_port, 32000);

        assert_int_equal(s->n_lb_ingress, 4);
        assert_string_equal(fmt(&s->lb_ingress[0].ip), "198.51.100.1");
        assert_false(s->lb_ingress[0].ipmode_proxy);
        assert_string_equal(fmt(&s->lb_ingress[1].ip), "198.51.100.2");
        assert_true(s->lb_ingress[1].ipmode_proxy);
        assert_int_equal(s->lb_ingress[2].ip.family, 0);
        assert_false(s->lb_ingress[2].ipmode_proxy);
        assert_int_equal(s->lb_ingress[3].ip.family, AF_INET6);
        assert_false(s->lb_ingress[3].ipmode_proxy);

        k8s_service_free(s);
        json_decref(o);
}

static void test_service_defaults(void **state)
{
        json_t *o = J("{'apiVersion':'v1','kind':'Service','metadata':{'name':'svc'},"
                      " 'spec':{'clusterIP':'10.0.0.1','ports':[{'port':443}]}}");
        char err[K8S_ERRLEN];
        struct k8s_service *s = NULL;

        (void) state;
        assert_int_equal(k8s_service_decode(o, &s, err), 0);
        assert_string_equal(s->ns, "default");
        assert_int_equal(s->type, K8S_SVC_CLUSTER_IP);
        assert_int_equal(s->n_cluster_ips, 1);
        assert_string_equal(fmt(&s->cluster_ips[0]), "10.0.0.1");
        assert_int_equal(s->n_ports, 1);
        assert_string_equal(s->ports[0].name, "");
        assert_int_equal(s->ports[0].proto, IPPROTO_TCP);
        assert_int_equal(s->ports[0].node_port, 0);
        assert_false(s->etp_local);
        assert_false(s->itp_local);
        assert_false(s->affinity_client_ip);
        assert_int_equal(s->affinity_timeout, 10800);
        assert_int_equal(s->health_check_node_port, 0);
        assert_null(s->proxy_name);
        assert_false(s->headless_label);
        assert_null(s->resource_version);
        assert_int_equal(s->n_external_ips, 0);
        assert_int_equal(s->n_lb_ingress, 0);
        assert_int_equal(s->n_source_ranges, 0);
        k8s_service_free(s);
        json_decref(o);

        /* ClientIP without a config: the default timeout; "Global" is Cluster */
        o = svc_json("{'sessionAffinity':'ClientIP','externalTrafficPolicy':'Global','type':'NodePort'}", NULL);
        assert_int_equal(k8s_service_decode(o, &s, err), 0);
        assert_true(s->affinity_client_ip);
        assert_int_equal(s->affinity_timeout, 10800);
        assert_false(s->etp_local);
        assert_int_equal(s->type, K8S_SVC_NODE_PORT);
        assert_int_equal(s->n_cluster_ips, 0);
        assert_false(s->headless);
        k8s_service_free(s);
        json_decref(o);

        /* no spec at all, nulls read as absent */
        o = J("{'apiVersion':'v1','kind':'Service','metadata':{'name':'x','namespace':null,'labels':null},"
              " 'spec':{'ports':null,'clusterIPs':null,'type':null}}");
        assert_int_equal(k8s_service_decode(o, &s, err), 0);
        assert_string_equal(s->ns, "default");
        assert_int_equal(s->n_ports, 0);
        k8s_service_free(s);
        json_decref(o);
}

static void test_service_cluster_ips(void **state)
{
        char err[K8S_ERRLEN];
        struct k8s_service *s = NULL;
        json_t *o;

        (void) state;
        o = svc_json("{'clusterIP':'None'}", NULL);
        assert_int_equal(k8s_service_decode(o, &s, err), 0);
        assert_true(s->headless);
        assert_int_equal(s->n_cluster_ips, 0);
        k8s_service_free(s);
        json_decref(o);

        o = svc_json("{'clusterIP':'None','clusterIPs':['None']}", NULL);
        assert_int_equal(k8s_service_decode(o, &s, err), 0);
        assert_true(s->headless);
        assert_int_equal(s->n_cluster_ips, 0);
        k8s_service_free(s);
        json_decref(o);

        o = svc_json("{'clusterIP':''}", NULL);
        assert_int_equal(k8s_service_decode(o, &s, err), 0);
        assert_false(s->headless);
        assert_int_equal(s->n_cluster_ips, 0);
        k8s_service_free(s);
        json_decref(o);

        /* clusterIPs wins; clusterIP may be absent */
        o = svc_json("{'clusterIPs':['fd00::1','010.0.0.1']}", NULL);
        assert_int_equal(k8s_service_decode(o, &s, err), 0);
        assert_int_equal(s->n_cluster_ips, 2);
        assert_string_equal(fmt(&s->cluster_ips[0]), "fd00::1");
        assert_string_equal(fmt(&s->cluster_ips[1]), "10.0.0.1");
        k8s_service_free(s);
        json_decref(o);

        /* an empty clusterIPs falls back to clusterIP */
        o = svc_json("{'clusterIP':'10.0.0.5','clusterIPs':[]}", NULL);
        assert_int_equal(k8s_service_decode(o, &s, err), 0);
        assert_int_equal(s->n_cluster_ips, 1);
        assert_string_equal(fmt(&s->cluster_ips[0]), "10.0.0.5");
        k8s_service_free(s);
        json_decref(o);
}

static void test_service_external_name(void **state)
{
        json_t *o = svc_json("{'type':'ExternalName','externalName':'example.com','clusterIP':'bogus',"
                             "'ports':[{'port':0,'protocol':'ICMP'}]}",
                             NULL);
        char err[K8S_ERRLEN];
        struct k8s_service *s = NULL;

        (void) state;
        assert_int_equal(k8s_service_decode(o, &s, err), 0);
        assert_int_equal(s->type, K8S_SVC_EXTERNAL_NAME);
        assert_string_equal(s->name, "svc1");
        assert_string_equal(s->ns, "ns1");
        assert_int_equal(s->n_cluster_ips, 0);
        assert_int_equal(s->n_ports, 0);
        k8s_service_free(s);
        json_decref(o);
}

struct bad_case {
        const char *spec, *status, *err;
};

static void test_service_errors(void **state)
{
        static const struct bad_case cases[] = {
                { "{'ports':[{'port':70000}]}", NULL, "spec.ports[0].port: 70000 is out of range 1-65535" },
                { "{'ports':[{'port':80},{'port':0}]}", NULL, "spec.ports[1].port: 0 is out of range 1-65535" },
                { "{'ports':[{'port':'80'}]}", NULL, "spec.ports[0].port: expected an integer, got a string" },
                { "{'ports':[{'port':80.0}]}", NULL, "spec.ports[0].port: expected an integer, got a number" },
                { "{'ports':[{'name':'x'}]}", NULL, "spec.ports[0].port: required" },
                { "{'ports':[{'port':80,'protocol':'ICMP'}]}", NULL,
                  "spec.ports[0].protocol: unsupported value \"ICMP\" (want TCP, UDP or SCTP)" },
                { "{'ports':[{'port':80,'protocol':6}]}", NULL, "spec.ports[0].protocol: expected a string, got an integer" },
                { "{'ports':[{'port':80,'nodePort':65536}]}", NULL, "spec.ports[0].nodePort: 65536 is out of range 0-65535" },
                { "{'ports':[{'port':80,'nodePort':-1}]}", NULL, "spec.ports[0].nodePort: -1 is out of range 0-65535" },
                { "{'ports':[{'port':80,'name':7}]}", NULL, "spec.ports[0].name: expected a string, got an integer" },
                { "{'ports':{'port':80}}", NULL, "spec.ports: expected a list, got an object" },
                { "{'ports':[80]}", NULL, "spec.ports[0]: expected an object, got an integer" },
                { "{'clusterIP':'10.0.0.300'}", NULL, "spec.clusterIP: not an IPv4/IPv6 address: \"10.0.0.300\"" },
                { "{'clusterIP':5}", NULL, "spec.clusterIP: expected a string, got an integer" },
                { "{'clusterIPs':['10.0.0.1','x']}", NULL, "spec.clusterIPs[1]: not an IPv4/IPv6 address: \"x\"" },
                { "{'clusterIPs':['10.0.0.1','10.0.0.2']}", NULL, "spec.clusterIPs[1]: at most one address per IP family" },
                { "{'clusterIPs':['10.0.0.1','fd00::1','10.0.0.2']}", NULL, "spec.clusterIPs: at most 2 entries allowed, got 3" },
                { "{'clusterIPs':['None','fd00::1']}", NULL, "spec.clusterIPs: \"None\" must be the only entry" },
                { "{'clusterIP':'10.0.0.1','clusterIPs':['10.0.0.2']}", NULL,
                  "spec.clusterIPs[0]: \"10.0.0.2\" must equal spec.clusterIP \"10.0.0.1\"" },
                { "{'clusterIPs':'10.0.0.1'}", NULL, "spec.clusterIPs: expected a list, got a string" },
                { "{'type':'Foo'}", NULL,
                  "spec.type: unsupported value \"Foo\" (want ClusterIP, NodePort, LoadBalancer or ExternalName)" },
                { "{'type':true}", NULL, "spec.type: expected a string, got a boolean" },
                { "{'externalIPs':['1.2.3.4','nope']}", NULL, "spec.externalIPs[1]: not an IPv4/IPv6 address: \"nope\"" },
                { "{'loadBalancerSourceRanges':['10.0.0.0/33']}", NULL,
                  "spec.loadBalancerSourceRanges[0]: not a CIDR: \"10.0.0.0/33\"" },
                { "{'loadBalancerSourceRanges':['10.0.0.1']}", NULL,
                  "spec.loadBalancerSourceRanges[0]: not a CIDR: \"10.0.0.1\"" },
                { "{'externalTrafficPolicy':'Nope'}", NULL,
                  "spec.externalTrafficPolicy: unsupported value \"Nope\" (want Cluster or Local)" },
                { "{'internalTrafficPolicy':'Global'}", NULL,
                  "spec.internalTrafficPolicy: unsupported value \"Global\" (want Cluster or Local)" },
                { "{'sessionAffinity':'Cookie'}", NULL,
                  "spec.sessionAffinity: unsupported value \"Cookie\" (want None or ClientIP)" },
                { "{'sessionAffinity':'ClientIP','sessionAffinityConfig':{'clientIP':{'timeoutSeconds':0}}}", NULL,
                  "spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is out of range 1-86400" },
                { "{'sessionAffinity':'ClientIP','sessionAffinityConfig':{'clientIP':{'timeoutSeconds':86401}}}", NULL,
                  "spec.sessionAffinityConfig.clientIP.timeoutSeconds: 86401 is out of range 1-86400" },
                { "{'sessionAffinityConfig':{'clientIP':[]}}", NULL,
                  "spec.sessionAffinityConfig.clientIP: expected an object, got a list" },
                { "{'healthCheckNodePort':65536}", NULL, "spec.healthCheckNodePort: 65536 is out of range 0-65535" },
                { "[]", NULL, "spec: expected an object, got a list" },
                { "{}", "{'loadBalancer':{'ingress':[{'ip':'1.2.3.4','ipMode':'bogus'}]}}",
                  "status.loadBalancer.ingress[0].ipMode: unsupported value \"bogus\" (want VIP or Proxy)" },
                { "{}", "{'loadBalancer':{'ingress':[{'ip':'1.2.3.4'},{'ip':'lb.example.com'}]}}",
                  "status.loadBalancer.ingress[1].ip: not an IPv4/IPv6 address: \"lb.example.com\"" },
                { "{}", "{'loadBalancer':{'ingress':{}}}", "status.loadBalancer.ingress: expected a list, got an object" },
                { "{}", "'up'", "status: expected an object, got a string" },
        };

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_t *o = svc_json(cases[i].spec, cases[i].status);
                struct k8s_service *s = (struct k8s_service *) 0x1;
                char err[K8S_ERRLEN] = "";

                if (k8s_service_decode(o, &s, err) != -EINVAL)
                        fail_msg("case %zu (%s) decoded", i, cases[i].spec);
                assert_ptr_equal(s, (struct k8s_service *) 0x1);
                if (strcmp(err, cases[i].err) != 0)
                        fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].err);
                json_decref(o);
        }
}

static void test_metadata_errors(void **state)
{
        static const struct {
                const char *json, *err;
        } cases[] = {
                { "{'apiVersion':'v1','kind':'Service','spec':{}}", "metadata.name: required" },
                { "{'apiVersion':'v1','kind':'Service','metadata':{'name':''}}", "metadata.name: required" },
                { "{'apiVersion':'v1','kind':'Service','metadata':{'name':5}}", "metadata.name: expected a string, got an integer" },
                { "{'apiVersion':'v1','kind':'Service','metadata':[]}", "metadata: expected an object, got a list" },
                { "{'apiVersion':'v1','kind':'Service','metadata':{'name':'a','namespace':{}}}",
                  "metadata.namespace: expected a string, got an object" },
                { "{'apiVersion':'v1','kind':'Service','metadata':{'name':'a','labels':[]}}",
                  "metadata.labels: expected an object, got a list" },
                { "{'apiVersion':'v1','kind':'Service','metadata':{'name':'a','labels':{'service.kubernetes.io/service-proxy-name':1}}}",
                  "metadata.labels[service.kubernetes.io/service-proxy-name]: expected a string, got an integer" },
                { "{'apiVersion':'v1','kind':'Service','metadata':{'name':'a\\nb'}}", "metadata.name: contains control characters" },
                { "{'apiVersion':'v1','kind':'Service','metadata':{'name':'a\\u0000b'}}", "metadata.name: contains a NUL byte" },
                { "{'apiVersion':'v1','kind':'Service','metadata':{'name':'a','resourceVersion':3}}",
                  "metadata.resourceVersion: expected a string, got an integer" },
        };
        char name[300], buf[512], err[K8S_ERRLEN];
        struct k8s_service *s = NULL;
        json_t *o;

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                o = J(cases[i].json);
                assert_int_equal(k8s_service_decode(o, &s, err), -EINVAL);
                if (strcmp(err, cases[i].err) != 0)
                        fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].err);
                json_decref(o);
        }

        /* names are bounded by the DNS subdomain length */
        memset(name, 'a', 254);
        name[254] = '\0';
        snprintf(buf, sizeof(buf), "{'apiVersion':'v1','kind':'Service','metadata':{'name':'%s'}}", name);
        o = J(buf);
        assert_int_equal(k8s_service_decode(o, &s, err), -EINVAL);
        assert_string_equal(err, "metadata.name: longer than 253 bytes");
        json_decref(o);
        name[253] = '\0';
        snprintf(buf, sizeof(buf), "{'apiVersion':'v1','kind':'Service','metadata':{'name':'%s'}}", name);
        o = J(buf);
        assert_int_equal(k8s_service_decode(o, &s, err), 0);
        assert_int_equal(strlen(s->name), 253);
        k8s_service_free(s);
        json_decref(o);

        /* not an object at all */
        o = J("[1]");
        assert_int_equal(k8s_service_decode(o, &s, err), -EINVAL);
        assert_string_equal(err, "expected an object, got a list");
        json_decref(o);
        assert_int_equal(k8s_service_decode(NULL, &s, err), -EINVAL);
}

/* ---- EndpointSlice ---- */

static void test_slice_full(void **state)
{
        json_t *o = J("{'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice',"
                      " 'metadata':{'name':'web-abc','namespace':'prod','resourceVersion':'7',"
                      "  'labels':{'kubernetes.io/service-name':'web'},"
                      "  'annotations':{'endpoints.kubernetes.io/last-change-trigger-time':'2024-01-01T00:00:00Z'}},"
                      " 'addressType':'IPv4',"
                      " 'endpoints':[{'addresses':['10.1.0.1','10.1.0.99'],"
                      "   'conditions':{'ready':false,'serving':true,'terminating':true},"
                      "   'hostname':'pod-a','nodeName':'node-1','zone':'z1','targetRef':{'kind':5},"
                      "   'hints':{'forZones':[{'name':'z1'},{'name':'z2'}],'forNodes':[{'name':'node-1'}]}},"
                      "  {'addresses':['010.1.0.2']}],"
                      " 'ports':[{'name':'http','port':8080,'protocol':'TCP','appProtocol':1},"
                      "   {'name':'dns','port':53,'protocol':'UDP'},{'port':9}, {'name':'x'}]}");
        struct k8s_endpoint_slice *s = NULL;
        char err[K8S_ERRLEN];
        const struct k8s_endpoint *e;

        (void) state;
        assert_int_equal(k8s_slice_decode(o, &s, err), 0);
        assert_string_equal(s->ns, "prod");
        assert_string_equal(s->name, "web-abc");
        assert_string_equal(s->service_name, "web");
        assert_string_equal(s->resource_version, "7");
        assert_string_equal(s->trigger_time, "2024-01-01T00:00:00Z");
        assert_int_equal(s->family, AF_INET);
        assert_int_equal(s->n_endpoints, 2);

        e = &s->endpoints[0];
        assert_string_equal(fmt(&e->addr), "10.1.0.1");
        assert_false(e->ready);
        assert_true(e->serving);
        assert_true(e->terminating);
        assert_string_equal(e->hostname, "pod-a");
        assert_string_equal(e->node_name, "node-1");
        assert_string_equal(e->zone, "z1");
        assert_int_equal(e->n_hint_zones, 2);
        assert_string_equal(e->hint_zones[0], "z1");
        assert_string_equal(e->hint_zones[1], "z2");
        assert_int_equal(e->n_hint_nodes, 1);
        assert_string_equal(e->hint_nodes[0], "node-1");

        /* nil conditions: ready and serving, not terminating */
        e = &s->endpoints[1];
        assert_string_equal(fmt(&e->addr), "10.1.0.2");
        assert_true(e->ready);
        assert_true(e->serving);
        assert_false(e->terminating);
        assert_null(e->hostname);
        assert_null(e->node_name);
        assert_null(e->zone);
        assert_int_equal(e->n_hint_zones, 0);
        assert_int_equal(e->n_hint_nodes, 0);

        assert_int_equal(s->n_ports, 4);
        assert_string_equal(s->ports[0].name, "http");
        assert_int_equal(s->ports[0].port, 8080);
        assert_int_equal(s->ports[0].proto, IPPROTO_TCP);
        assert_string_equal(s->ports[1].name, "dns");
        assert_int_equal(s->ports[1].proto, IPPROTO_UDP);
        assert_null(s->ports[2].name);
        assert_int_equal(s->ports[2].port, 9);
        assert_int_equal(s->ports[2].proto, IPPROTO_TCP);
        assert_string_equal(s->ports[3].name, "x");
        assert_int_equal(s->ports[3].port, 0);

        k8s_slice_free(s);
        json_decref(o);
}

static void test_slice_variants(void **state)
{
        struct k8s_endpoint_slice *s = NULL;
        char err[K8S_ERRLEN];
        json_t *o;

        (void) state;
        /* IPv6, no label, no endpoints, partial conditions */
        o = J("{'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice','metadata':{'name':'s6'},"
              " 'addressType':'IPv6','endpoints':[{'addresses':['fd00::5'],'conditions':{'serving':false}}]}");
        assert_int_equal(k8s_slice_decode(o, &s, err), 0);
        assert_string_equal(s->ns, "default");
        assert_null(s->service_name);
        assert_null(s->trigger_time);
        assert_int_equal(s->family, AF_INET6);
        assert_int_equal(s->n_endpoints, 1);
        assert_string_equal(fmt(&s->endpoints[0].addr), "fd00::5");
        assert_true(s->endpoints[0].ready);
        assert_false(s->endpoints[0].serving);
        assert_false(s->endpoints[0].terminating);
        assert_int_equal(s->n_ports, 0);
        k8s_slice_free(s);
        json_decref(o);

        /* FQDN: addresses are names, kept out of the IP world */
        o = J("{'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice','metadata':{'name':'f','namespace':'n'},"
              " 'addressType':'FQDN','endpoints':[{'addresses':['db.example.com']}],'ports':[{'port':5432}]}");
        assert_int_equal(k8s_slice_decode(o, &s, err), 0);
        assert_int_equal(s->family, 0);
        assert_int_equal(s->n_endpoints, 1);
        assert_int_equal(s->endpoints[0].addr.family, 0);
        k8s_slice_free(s);
        json_decref(o);
}

static void test_slice_errors(void **state)
{
        static const struct {
                const char *body, *err;
        } cases[] = {
                { "'endpoints':[]", "addressType: required" },
                { "'addressType':'IPX'", "addressType: unsupported value \"IPX\" (want IPv4, IPv6 or FQDN)" },
                { "'addressType':'IPv4','endpoints':[{'addresses':['fd00::1']}]",
                  "endpoints[0].addresses[0]: not an IPv4 address: \"fd00::1\"" },
                { "'addressType':'IPv6','endpoints':[{'addresses':['fd00::1']},{'addresses':['10.0.0.1']}]",
                  "endpoints[1].addresses[0]: not an IPv6 address: \"10.0.0.1\"" },
                { "'addressType':'IPv6','endpoints':[{'addresses':['::ffff:10.0.0.1']}]",
                  "endpoints[0].addresses[0]: not an IPv6 address: \"::ffff:10.0.0.1\"" },
                { "'addressType':'IPv4','endpoints':[{'addresses':[]}]", "endpoints[0].addresses: must have at least one entry" },
                { "'addressType':'IPv4','endpoints':[{}]", "endpoints[0].addresses: must have at least one entry" },
                { "'addressType':'IPv4','endpoints':[{'addresses':'10.0.0.1'}]",
                  "endpoints[0].addresses: expected a list, got a string" },
                { "'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'conditions':{'ready':'true'}}]",
                  "endpoints[0].conditions.ready: expected a boolean, got a string" },
                { "'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'conditions':{'terminating':1}}]",
                  "endpoints[0].conditions.terminating: expected a boolean, got an integer" },
                { "'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'nodeName':[]}]",
                  "endpoints[0].nodeName: expected a string, got a list" },
                { "'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'hints':{'forZones':[{'name':1}]}}]",
                  "endpoints[0].hints.forZones[0].name: expected a string, got an integer" },
                { "'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'hints':{'forNodes':[{}]}}]",
                  "endpoints[0].hints.forNodes[0].name: required" },
                { "'addressType':'IPv4','ports':[{'port':-1}]", "ports[0].port: -1 is out of range 0-65535" },
                { "'addressType':'IPv4','ports':[{'port':70000}]", "ports[0].port: 70000 is out of range 0-65535" },
                { "'addressType':'IPv4','ports':[{'port':80,'protocol':'ICMP'}]",
                  "ports[0].protocol: unsupported value \"ICMP\" (want TCP, UDP or SCTP)" },
                { "'addressType':'IPv4','ports':[{'port':80,'name':false}]", "ports[0].name: expected a string, got a boolean" },
                { "'addressType':'IPv4','endpoints':{}", "endpoints: expected a list, got an object" },
        };
        char buf[1024], err[K8S_ERRLEN];

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct k8s_endpoint_slice *s = (struct k8s_endpoint_slice *) 0x1;
                json_t *o;

                snprintf(buf, sizeof(buf),
                         "{'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice','metadata':{'name':'es1','namespace':'ns1'},%s}",
                         cases[i].body);
                o = J(buf);
                assert_int_equal(k8s_slice_decode(o, &s, err), -EINVAL);
                assert_ptr_equal(s, (struct k8s_endpoint_slice *) 0x1);
                if (strcmp(err, cases[i].err) != 0)
                        fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].err);
                json_decref(o);
        }
}

/* ---- Node ---- */

static void test_node(void **state)
{
        json_t *o = J("{'apiVersion':'v1','kind':'Node',"
                      " 'metadata':{'name':'node-1','resourceVersion':'9','labels':{'topology.kubernetes.io/zone':'z1'}},"
                      " 'spec':{'taints':[{'key':'a','effect':'NoSchedule'},{'key':'ToBeDeletedByClusterAutoscaler'}]},"
                      " 'status':{'addresses':[{'type':'Hostname','address':'node-1'},"
                      "   {'type':'ExternalIP','address':'198.51.100.9'},{'type':'InternalIP','address':'10.0.0.9'},"
                      "   {'type':'InternalIP','address':'fd00::9'}]}}");
        struct k8s_node *n = NULL;
        char err[K8S_ERRLEN];

        (void) state;
        assert_int_equal(k8s_node_decode(o, &n, err), 0);
        assert_string_equal(n->name, "node-1");
        assert_string_equal(n->zone, "z1");
        assert_string_equal(n->resource_version, "9");
        assert_false(n->deleting);
        assert_true(n->tbd_taint);
        assert_int_equal(n->n_addrs, 3);
        assert_string_equal(fmt(&n->addrs[0]), "10.0.0.9");
        assert_string_equal(fmt(&n->addrs[1]), "fd00::9");
        assert_string_equal(fmt(&n->addrs[2]), "198.51.100.9");
        k8s_node_free(n);
        json_decref(o);

        o = J("{'apiVersion':'v1','kind':'Node','metadata':{'name':'n2','deletionTimestamp':'2024-01-01T00:00:00Z',"
              " 'labels':{'topology.kubernetes.io/zone':''}}}");
        assert_int_equal(k8s_node_decode(o, &n, err), 0);
        assert_string_equal(n->zone, "");
        assert_true(n->deleting);
        assert_false(n->tbd_taint);
        assert_int_equal(n->n_addrs, 0);
        k8s_node_free(n);
        json_decref(o);

        o = J("{'apiVersion':'v1','kind':'Node','metadata':{'name':'n3'}}");
        assert_int_equal(k8s_node_decode(o, &n, err), 0);
        assert_null(n->zone);
        assert_int_equal(n->n_pod_cidrs, 0);
        k8s_node_free(n);
        json_decref(o);
}

/* spec.podCIDRs (NodeCIDR local-traffic detection), and spec.podCIDR,
 * which writers before dual-stack set alone. */
static void test_node_pod_cidrs(void **state)
{
        struct k8s_node *n = NULL;
        char err[K8S_ERRLEN], buf[IPCIDR_STRLEN];
        json_t *o;

        (void) state;
        o = J("{'apiVersion':'v1','kind':'Node','metadata':{'name':'n'},"
              " 'spec':{'podCIDR':'10.244.1.0/24','podCIDRs':['10.244.1.0/24','fd00:10:244:1::/64']}}");
        assert_int_equal(k8s_node_decode(o, &n, err), 0);
        assert_int_equal(n->n_pod_cidrs, 2);
        assert_string_equal(ipcidr_format(&n->pod_cidrs[0], buf), "10.244.1.0/24");
        assert_string_equal(ipcidr_format(&n->pod_cidrs[1], buf), "fd00:10:244:1::/64");
        k8s_node_free(n);
        json_decref(o);

        o = J("{'apiVersion':'v1','kind':'Node','metadata':{'name':'n'},'spec':{'podCIDR':'10.244.2.7/24'}}");
        assert_int_equal(k8s_node_decode(o, &n, err), 0);
        assert_int_equal(n->n_pod_cidrs, 1);
        assert_string_equal(ipcidr_format(&n->pod_cidrs[0], buf), "10.244.2.0/24");
        k8s_node_free(n);
        json_decref(o);

        o = J("{'apiVersion':'v1','kind':'Node','metadata':{'name':'n'},'spec':{'podCIDR':'','podCIDRs':[]}}");
        assert_int_equal(k8s_node_decode(o, &n, err), 0);
        assert_int_equal(n->n_pod_cidrs, 0);
        k8s_node_free(n);
        json_decref(o);
}

static void test_node_errors(void **state)
{
        static const struct {
                const char *body, *err;
        } cases[] = {
                { "'status':{'addresses':[{'type':'InternalIP','address':'10.0.0.1'},{'type':'ExternalIP','address':'x'}]}",
                  "status.addresses[1].address: not an IPv4/IPv6 address: \"x\"" },
                { "'status':{'addresses':[{'type':3,'address':'10.0.0.1'}]}",
                  "status.addresses[0].type: expected a string, got an integer" },
                { "'status':{'addresses':{}}", "status.addresses: expected a list, got an object" },
                { "'status':{'addresses':[{'type':'InternalIP'}]}", "status.addresses[0].address: required" },
                { "'spec':{'taints':[{'key':1}]}", "spec.taints[0].key: expected a string, got an integer" },
                { "'spec':{'taints':['x']}", "spec.taints[0]: expected an object, got a string" },
                { "'spec':{'podCIDRs':'10.0.0.0/24'}", "spec.podCIDRs: expected a list, got a string" },
                { "'spec':{'podCIDRs':['10.0.0.0/24','10.0.0.300/24']}",
                  "spec.podCIDRs[1]: not a CIDR: \"10.0.0.300/24\"" },
                { "'spec':{'podCIDRs':['']}", "spec.podCIDRs[0]: not a CIDR: \"\"" },
                { "'spec':{'podCIDRs':[7]}", "spec.podCIDRs[0]: expected a string, got an integer" },
                { "'spec':{'podCIDRs':['10.0.0.0/24','10.0.1.0/24']}",
                  "spec.podCIDRs: may specify no more than one CIDR for each IP family" },
                { "'spec':{'podCIDR':'10.0.0.0/33'}", "spec.podCIDR: not a CIDR: \"10.0.0.0/33\"" },
                { "'spec':{'podCIDR':['10.0.0.0/24']}", "spec.podCIDR: expected a string, got a list" },
                { "'spec':{'podCIDR':'10.0.1.0/24','podCIDRs':['10.0.0.0/24']}",
                  "spec.podCIDR: must be the first of spec.podCIDRs" },
        };
        char buf[1024], err[K8S_ERRLEN];

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct k8s_node *n = (struct k8s_node *) 0x1;
                json_t *o;

                snprintf(buf, sizeof(buf), "{'apiVersion':'v1','kind':'Node','metadata':{'name':'n'},%s}", cases[i].body);
                o = J(buf);
                assert_int_equal(k8s_node_decode(o, &n, err), -EINVAL);
                assert_ptr_equal(n, (struct k8s_node *) 0x1);
                if (strcmp(err, cases[i].err) != 0)
                        fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].err);
                json_decref(o);
        }
}

/* ---- kinds, fixtures, helpers ---- */

static void test_kind_of(void **state)
{
        static const struct {
                const char *json;
                enum k8s_kind kind;
        } cases[] = {
                { "{'apiVersion':'v1','kind':'Service'}", K8S_KIND_SERVICE },
                { "{'apiVersion':'v1','kind':'Node'}", K8S_KIND_NODE },
                { "{'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice'}", K8S_KIND_ENDPOINT_SLICE },
                { "{'apiVersion':'discovery.k8s.io/v1beta1','kind':'EndpointSlice'}", K8S_KIND_UNKNOWN },
                { "{'apiVersion':'v2','kind':'Service'}", K8S_KIND_UNKNOWN },
                { "{'kind':'Service'}", K8S_KIND_UNKNOWN },
                { "{'apiVersion':'apps/v1','kind':'Deployment'}", K8S_KIND_UNKNOWN },
                { "{'apiVersion':'v1','kind':'Endpoints'}", K8S_KIND_UNKNOWN },
                { "{'apiVersion':'v1','kind':'List','items':[]}", K8S_KIND_LIST },
                { "{'apiVersion':'v1','kind':'ServiceList','items':[]}", K8S_KIND_LIST },
                { "{'apiVersion':'v1','kind':'List'}", K8S_KIND_UNKNOWN },
                { "{'apiVersion':'v1','kind':'List','items':{}}", K8S_KIND_UNKNOWN },
                { "{'apiVersion':'v1','kind':'ConfigMapList','items':[]}", K8S_KIND_LIST },
                { "{'apiVersion':'v1','kind':'Playlist','items':[]}", K8S_KIND_UNKNOWN },
                { "{'apiVersion':'v1','kind':5}", K8S_KIND_UNKNOWN },
                { "[]", K8S_KIND_UNKNOWN },
        };

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_t *o = J(cases[i].json);

                if (k8s_kind_of(o) != cases[i].kind)
                        fail_msg("%s: got %d, want %d", cases[i].json, k8s_kind_of(o), cases[i].kind);
                json_decref(o);
        }
        assert_int_equal(k8s_kind_of(NULL), K8S_KIND_UNKNOWN);
}

static json_t *load_fixture(const char *name)
{
        char path[256];
        json_error_t e;
        json_t *o;

        snprintf(path, sizeof(path), "tests/data/fixtures/%s", name);
        o = json_load_file(path, 0, &e);
        if (!o)
                fail_msg("%s: %s", path, e.text);
        return o;
}

static void test_fixtures(void **state)
{
        struct k8s_endpoint_slice *es = NULL;
        struct k8s_service *s = NULL;
        struct k8s_node *n = NULL;
        char err[K8S_ERRLEN];
        json_t *o;
        int r;

        (void) state;
        o = load_fixture("core.v1.Service.json");
        assert_int_equal(k8s_kind_of(o), K8S_KIND_SERVICE);
        assert_int_equal(k8s_service_decode(o, &s, err), -EINVAL);
        assert_null(s);
        assert_string_equal(err,
                            "spec.type: unsupported value \"typeValue\" (want ClusterIP, NodePort, LoadBalancer or ExternalName)");
        json_decref(o);

        o = load_fixture("discovery.k8s.io.v1.EndpointSlice.json");
        assert_int_equal(k8s_kind_of(o), K8S_KIND_ENDPOINT_SLICE);
        assert_int_equal(k8s_slice_decode(o, &es, err), -EINVAL);
        assert_null(es);
        assert_string_equal(err, "addressType: unsupported value \"addressTypeValue\" (want IPv4, IPv6 or FQDN)");
        json_decref(o);

        /* Its only address has type "typeValue", which is neither Internal
         * nor External: nothing to parse, so it decodes. */
        o = load_fixture("core.v1.Node.json");
        assert_int_equal(k8s_kind_of(o), K8S_KIND_NODE);
        r = k8s_node_decode(o, &n, err);
        assert_true(r == 0 || r == -EINVAL);
        if (r == 0) {
                assert_string_equal(n->name, "nameValue");
                assert_true(n->deleting);
                assert_false(n->tbd_taint);
                assert_int_equal(n->n_addrs, 0);
                k8s_node_free(n);
        }
        json_decref(o);

        o = load_fixture("core.v1.Endpoints.json");
        assert_int_equal(k8s_kind_of(o), K8S_KIND_UNKNOWN);
        json_decref(o);
}

/* The placeholders are patched one field at a time into valid values: each
 * step must move the error to the next field, proving each is checked. */
static void test_fixture_service_fields(void **state)
{
        static const struct {
                const char *path, *value, *err_prefix;
        } steps[] = {
                { "spec.type", "'LoadBalancer'", "spec.clusterIPs[0]: \"clusterIPsValue\" must equal spec.clusterIP" },
                { "spec.clusterIP", "'10.0.0.1'", "spec.clusterIPs[0]: \"clusterIPsValue\" must equal spec.clusterIP" },
                { "spec.clusterIPs", "['10.0.0.1']", "spec.ports[0].protocol: unsupported value \"protocolValue\"" },
                { "spec.ports", "[{'port':3,'nodePort':5,'targetPort':'x','appProtocol':'y'}]",
                  "spec.externalIPs[0]: not an IPv4/IPv6 address: \"externalIPsValue\"" },
                { "spec.externalIPs", "[]", "spec.loadBalancerSourceRanges[0]: not a CIDR: \"loadBalancerSourceRangesValue\"" },
                { "spec.loadBalancerSourceRanges", "null", "spec.externalTrafficPolicy: unsupported value" },
                { "spec.externalTrafficPolicy", "'Local'", "spec.internalTrafficPolicy: unsupported value" },
                { "spec.internalTrafficPolicy", "'Cluster'", "spec.sessionAffinity: unsupported value" },
                { "spec.sessionAffinity", "'ClientIP'", "status.loadBalancer.ingress[0].ip: not an IPv4/IPv6 address" },
                { "status", "{'loadBalancer':{'ingress':[{'hostname':'h','ipMode':'Proxy'}]}}", NULL },
        };
        char err[K8S_ERRLEN];
        json_t *o;

        (void) state;
        o = load_fixture("core.v1.Service.json");
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                struct k8s_service *s = NULL;
                char key[64], *dot;
                json_t *parent = o, *v = J(steps[i].value);
                int r;

                snprintf(key, sizeof(key), "%s", steps[i].path);
                dot = strchr(key, '.');
                if (dot) {
                        *dot = '\0';
                        parent = json_object_get(o, key);
                        memmove(key, dot + 1, strlen(dot + 1) + 1);
                }
                assert_int_equal(json_object_set_new(parent, key, v), 0);
                r = k8s_service_decode(o, &s, err);
                if (!steps[i].err_prefix) {
                        assert_int_equal(r, 0);
                        assert_int_equal(s->type, K8S_SVC_LOAD_BALANCER);
                        assert_true(s->etp_local);
                        assert_true(s->affinity_client_ip);
                        assert_int_equal(s->affinity_timeout, 1);
                        assert_int_equal(s->health_check_node_port, 12);
                        assert_int_equal(s->n_ports, 1);
                        assert_int_equal(s->ports[0].node_port, 5);
                        assert_int_equal(s->n_lb_ingress, 1);
                        assert_true(s->lb_ingress[0].ipmode_proxy);
                        assert_string_equal(s->ns, "namespaceValue");
                        k8s_service_free(s);
                        continue;
                }
                assert_int_equal(r, -EINVAL);
                if (strncmp(err, steps[i].err_prefix, strlen(steps[i].err_prefix)) != 0)
                        fail_msg("step %zu: got \"%s\", want \"%s...\"", i, err, steps[i].err_prefix);
        }
        json_decref(o);
}

static void test_object_ref(void **state)
{
        char buf[128];
        json_t *o;

        (void) state;
        o = J("{'apiVersion':'v1','kind':'Service','metadata':{'name':'svc1','namespace':'ns1'}}");
        assert_string_equal(k8s_object_ref(o, buf, sizeof(buf)), "Service ns1/svc1");
        json_decref(o);
        o = J("{'apiVersion':'v1','kind':'Service','metadata':{'name':'svc1'}}");
        assert_string_equal(k8s_object_ref(o, buf, sizeof(buf)), "Service default/svc1");
        json_decref(o);
        o = J("{'apiVersion':'v1','kind':'Node','metadata':{'name':'n1'}}");
        assert_string_equal(k8s_object_ref(o, buf, sizeof(buf)), "Node n1");
        json_decref(o);
        o = J("{'metadata':{'name':5}}");
        assert_string_equal(k8s_object_ref(o, buf, sizeof(buf)), "? default/?");
        json_decref(o);
        assert_string_equal(k8s_object_ref(NULL, buf, sizeof(buf)), "? default/?");
        o = J("{'kind':'Service','metadata':{'name':'a\\nb'}}");
        assert_string_equal(k8s_object_ref(o, buf, sizeof(buf)), "Service default/?");
        json_decref(o);
        assert_string_equal(k8s_object_ref(NULL, buf, 4), "? d");
}

static void test_proto_names(void **state)
{
        (void) state;
        assert_string_equal(k8s_proto_name(IPPROTO_TCP), "TCP");
        assert_string_equal(k8s_proto_name(IPPROTO_UDP), "UDP");
        assert_string_equal(k8s_proto_name(IPPROTO_SCTP), "SCTP");
        assert_string_equal(k8s_proto_lower(IPPROTO_TCP), "tcp");
        assert_string_equal(k8s_proto_lower(IPPROTO_UDP), "udp");
        assert_string_equal(k8s_proto_lower(IPPROTO_SCTP), "sctp");
        assert_string_equal(k8s_proto_name(IPPROTO_ICMP), "?");
}

/* Sets the member at a '/'-separated path (array indexes as numbers) to v;
 * v NULL deletes it. */
static void json_path_set(json_t *root, const char *path, json_t *v)
{
        char *p = strdup(path), *save = NULL, *tok, *next;
        json_t *cur = root;

        assert_non_null(p);
        for (tok = strtok_r(p, "/", &save); tok; tok = next) {
                next = strtok_r(NULL, "/", &save);
                if (json_is_array(cur)) {
                        size_t i = strtoul(tok, NULL, 10);

                        if (!next) {
                                assert_int_equal(v ? json_array_set_new(cur, i, v) : json_array_remove(cur, i), 0);
                                break;
                        }
                        cur = json_array_get(cur, i);
                } else {
                        if (!next) {
                                assert_int_equal(v ? json_object_set_new(cur, tok, v) : json_object_del(cur, tok), 0);
                                break;
                        }
                        cur = json_object_get(cur, tok);
                }
                if (!cur)
                        fail_msg("%s: no %s", path, tok);
        }
        free(p);
}

/* One change of a test object: "label:KEY" names a label (its key holds a
 * '/'), anything else a path; value NULL deletes. */
static void change(json_t *o, const char *path, const char *value)
{
        json_t *v = value ? J(value) : NULL;

        if (!strncmp(path, "label:", 6)) {
                json_t *labels = json_object_get(json_object_get(o, "metadata"), "labels");

                assert_int_equal(v ? json_object_set_new(labels, path + 6, v) : json_object_del(labels, path + 6), 0);
        } else {
                json_path_set(o, path, v);
        }
}

/* k8s_*_equal compare every decoded field but the resourceVersion and the
 * trigger time: each field a proxy reads, changed alone, makes the objects
 * differ (a field forgotten there would leave a change unsynced). */
static void test_equal_fields(void **state)
{
        static const char *svc =
                "{'apiVersion':'v1','kind':'Service','metadata':{'name':'s','namespace':'n','resourceVersion':'7',"
                "'labels':{'service.kubernetes.io/service-proxy-name':'p','service.kubernetes.io/headless':''}},"
                "'spec':{'type':'LoadBalancer','clusterIP':'10.96.0.1','clusterIPs':['10.96.0.1','fd00::1'],"
                "'ipFamilies':['IPv4','IPv6'],'externalIPs':['192.0.2.1','192.0.2.2'],"
                "'loadBalancerSourceRanges':['198.51.100.0/24'],'externalTrafficPolicy':'Local',"
                "'internalTrafficPolicy':'Local','healthCheckNodePort':30001,'sessionAffinity':'ClientIP',"
                "'sessionAffinityConfig':{'clientIP':{'timeoutSeconds':60}},"
                "'ports':[{'name':'http','protocol':'TCP','port':80,'targetPort':8080,'nodePort':30080}]},"
                "'status':{'loadBalancer':{'ingress':[{'ip':'203.0.113.1','ipMode':'VIP'}]}}}";
        static const struct {
                const char *path, *value; /* value NULL: deleted */
        } svc_changes[] = {
                { "metadata/name", "'t'" },
                { "metadata/namespace", "'m'" },
                { "label:service.kubernetes.io/service-proxy-name", NULL },
                { "label:service.kubernetes.io/headless", NULL },
                { "spec/type", "'NodePort'" },
                { "spec/clusterIPs", "['10.96.0.1']" },
                { "spec/externalIPs/1", "'192.0.2.3'" },
                { "spec/loadBalancerSourceRanges/0", "'198.51.100.0/25'" },
                { "spec/externalTrafficPolicy", "'Cluster'" },
                { "spec/internalTrafficPolicy", "'Cluster'" },
                { "spec/healthCheckNodePort", "30002" },
                { "spec/sessionAffinity", "'None'" },
                { "spec/sessionAffinityConfig/clientIP/timeoutSeconds", "61" },
                { "spec/ports/0/name", "'web'" },
                { "spec/ports/0/protocol", "'UDP'" },
                { "spec/ports/0/port", "81" },
                { "spec/ports/0/nodePort", "30081" },
                { "status/loadBalancer/ingress/0/ip", "'203.0.113.2'" },
                { "status/loadBalancer/ingress/0/ipMode", "'Proxy'" },
        };
        static const char *slice =
                "{'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice','addressType':'IPv4',"
                "'metadata':{'name':'s-1','namespace':'n','resourceVersion':'8',"
                "'labels':{'kubernetes.io/service-name':'s'},"
                "'annotations':{'endpoints.kubernetes.io/last-change-trigger-time':'2026-01-01T00:00:00Z'}},"
                "'endpoints':[{'addresses':['10.244.0.1'],'hostname':'h','nodeName':'a','zone':'z',"
                "'conditions':{'ready':true,'serving':true,'terminating':false},"
                "'hints':{'forZones':[{'name':'z'}],'forNodes':[{'name':'a'}]}}],"
                "'ports':[{'name':'http','protocol':'TCP','port':8080}]}";
        static const struct {
                const char *path, *value;
        } slice_changes[] = {
                { "metadata/name", "'s-2'" },
                { "metadata/namespace", "'m'" },
                { "label:kubernetes.io/service-name", "'t'" },
                { "endpoints/0/addresses/0", "'10.244.0.2'" },
                { "endpoints/0/hostname", "'g'" },
                { "endpoints/0/nodeName", "'b'" },
                { "endpoints/0/zone", "'y'" },
                { "endpoints/0/conditions/ready", "false" },
                { "endpoints/0/conditions/serving", "false" },
                { "endpoints/0/conditions/terminating", "true" },
                { "endpoints/0/hints/forZones/0/name", "'y'" },
                { "endpoints/0/hints/forNodes/0/name", "'b'" },
                { "ports/0/name", "'web'" },
                { "ports/0/protocol", "'UDP'" },
                { "ports/0/port", "8081" },
        };
        struct k8s_service *a = NULL, *b = NULL;
        struct k8s_endpoint_slice *x = NULL, *y = NULL;
        char err[K8S_ERRLEN];
        json_t *o;
        (void)state;

        o = J(svc);
        assert_int_equal(k8s_service_decode(o, &a, err), 0);
        json_path_set(o, "metadata/resourceVersion", json_string("9"));
        assert_int_equal(k8s_service_decode(o, &b, err), 0);
        assert_true(k8s_service_equal(a, b));
        k8s_service_free(b);
        json_decref(o);
        for (size_t i = 0; i < sizeof(svc_changes) / sizeof(svc_changes[0]); i++) {
                o = J(svc);
                change(o, svc_changes[i].path, svc_changes[i].value);
                b = NULL;
                if (k8s_service_decode(o, &b, err) < 0)
                        fail_msg("%s: %s", svc_changes[i].path, err);
                if (k8s_service_equal(a, b))
                        fail_msg("Service with %s changed compares equal", svc_changes[i].path);
                k8s_service_free(b);
                json_decref(o);
        }
        k8s_service_free(a);

        o = J(slice);
        assert_int_equal(k8s_slice_decode(o, &x, err), 0);
        json_path_set(o, "metadata/resourceVersion", json_string("10"));
        json_object_set_new(json_object_get(json_object_get(o, "metadata"), "annotations"),
                            "endpoints.kubernetes.io/last-change-trigger-time", json_string("2026-01-02T00:00:00Z"));
        assert_int_equal(k8s_slice_decode(o, &y, err), 0);
        assert_true(k8s_slice_equal(x, y));
        k8s_slice_free(y);
        json_decref(o);
        for (size_t i = 0; i < sizeof(slice_changes) / sizeof(slice_changes[0]); i++) {
                o = J(slice);
                change(o, slice_changes[i].path, slice_changes[i].value);
                y = NULL;
                if (k8s_slice_decode(o, &y, err) < 0)
                        fail_msg("%s: %s", slice_changes[i].path, err);
                if (k8s_slice_equal(x, y))
                        fail_msg("EndpointSlice with %s changed compares equal", slice_changes[i].path);
                k8s_slice_free(y);
                json_decref(o);
        }
        k8s_slice_free(x);
}

static void test_free_null(void **state)
{
        (void) state;
        k8s_service_free(NULL);
        k8s_slice_free(NULL);
        k8s_node_free(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_service_full),   cmocka_unit_test(test_service_defaults),
                cmocka_unit_test(test_service_cluster_ips), cmocka_unit_test(test_service_external_name),
                cmocka_unit_test(test_service_errors), cmocka_unit_test(test_metadata_errors),
                cmocka_unit_test(test_slice_full),     cmocka_unit_test(test_slice_variants),
                cmocka_unit_test(test_slice_errors),   cmocka_unit_test(test_node),
                cmocka_unit_test(test_node_pod_cidrs),
                cmocka_unit_test(test_node_errors),    cmocka_unit_test(test_kind_of),
                cmocka_unit_test(test_fixtures),       cmocka_unit_test(test_fixture_service_fields),
                cmocka_unit_test(test_object_ref),     cmocka_unit_test(test_proto_names),
                cmocka_unit_test(test_free_null),      cmocka_unit_test(test_equal_fields),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}

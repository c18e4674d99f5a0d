/* SPDX-License-Identifier: Apache-2.0 */
/* The streaming EndpointSlice decoder (proxy/k8s_stream.c) against the
 * jansson path (watch_event_parse + k8s_slice_decode): whatever it accepts
 * must decode to the same slice, and whatever is bad or unusual it must leave
 * to the jansson path, which names the field. */
#include "testutil.h"

#include <errno.h>
#include <netinet/in.h>

#include "k8s.h"
#include "watch.h"

/* Single quotes for readability; no test string needs a real one. */
static char *q(const char *s)
{
        char *d = strdup(s);

        assert_non_null(d);
        for (char *p = d; *p; p++)
                if (*p == '\'')
                        *p = '"';
        return d;
}

/* The jansson path, as event_cb and apply run it for a slice event. */
static int reference(const char *frame, size_t len, struct k8s_endpoint_slice **ret)
{
        enum watch_event_type t;
        char err[K8S_ERRLEN];
        json_t *obj;
        int r;

        if (watch_event_parse(frame, len, &t, &obj) < 0)
                return -EBADMSG;
        r = t == WATCH_ADDED || t == WATCH_MODIFIED ? k8s_slice_decode(obj, ret, err) : -ENOENT;
        json_decref(obj);
        return r;
}

static bool streq_null(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static bool same(const struct k8s_endpoint_slice *a, const struct k8s_endpoint_slice *b)
{
        /* k8s_slice_equal leaves out what only dates a change. */
        return k8s_slice_equal(a, b) && streq_null(a->ns, b->ns) && streq_null(a->name, b->name) &&
               streq_null(a->service_name, b->service_name) && streq_null(a->resource_version, b->resource_version) &&
               streq_null(a->trigger_time, b->trigger_time);
}

/* Both paths on one frame; the fast path's result, checked against jansson's. */
static int check(const char *frame, size_t len)
{
        struct k8s_endpoint_slice *f = (struct k8s_endpoint_slice *)0x1, *j = NULL;
        int fr = k8s_slice_event_decode(frame, len, &f), jr = reference(frame, len, &j);

        if (fr == 0) {
                if (jr != 0)
                        fail_msg("streamed but jansson refuses (%d): %.*s", jr, (int)len, frame);
                if (!same(f, j))
                        fail_msg("streamed differently: %.*s", (int)len, frame);
                k8s_slice_free(f);
        } else {
                assert_int_equal(fr, -EAGAIN);
                assert_ptr_equal(f, (struct k8s_endpoint_slice *)0x1);
        }
        k8s_slice_free(j);
        return fr;
}

static const char *const good[] = {
        /* tests/fakeapi.py's bench_slice, as json.dumps writes it */
        "{'type': 'MODIFIED', 'object': {'apiVersion': 'discovery.k8s.io/v1', 'kind': 'EndpointSlice', "
        "'metadata': {'name': 'svc-7-abcde', 'namespace': 'bench', 'labels': {'kubernetes.io/service-name': 'svc-7'}, "
        "'resourceVersion': '123'}, 'addressType': 'IPv4', 'endpoints': [{'addresses': ['10.128.0.7'], "
        "'conditions': {'ready': true}, 'nodeName': 'node0'}, {'addresses': ['10.129.0.7'], "
        "'conditions': {'ready': true}, 'nodeName': 'node1'}], 'ports': [{'port': 8080, 'name': '', 'protocol': 'TCP'}]}}",
        /* every field the decoder reads, and some it does not */
        "{'type':'ADDED','object':{'apiVersion':'discovery.k8s.io/v1','kind':'EndpointSlice',"
        " 'metadata':{'name':'web-abc','namespace':'prod','resourceVersion':'7','uid':'x','generation':3,"
        "  'managedFields':[{'manager':'m','fieldsV1':{'f:a':{'.':{}}},'time':'t'}],"
        "  'labels':{'kubernetes.io/service-name':'web','other':'v'},"
        "  'annotations':{'endpoints.kubernetes.io/last-change-trigger-time':'2024-01-01T00:00:00Z','a':'b'}},"
        " 'addressType':'IPv4',"
        " 'endpoints':[{'addresses':['10.1.0.1','10.1.0.99'],"
        "   'conditions':{'ready':false,'serving':true,'terminating':true},"
        "   'hostname':'pod-a','nodeName':'node-1','zone':'z1','targetRef':{'kind':5,'x':[1,2.5,null,true]},"
        "   'hints':{'forZones':[{'name':'z1'},{'name':'z2'}],'forNodes':[{'name':'node-1','x':1}]}},"
        "  {'addresses':['010.1.0.2']}],"
        " 'ports':[{'name':'http','port':8080,'protocol':'TCP','appProtocol':1},"
        "   {'name':'dns','port':53,'protocol':'UDP'},{'port':9,'protocol':'SCTP'},{'name':'x'},{'port':0}]},"
        " 'extra':{'a':[[]]}}",
        /* IPv6, no namespace, no label, partial conditions, no ports */
        "{'type':'MODIFIED','object':{'metadata':{'name':'s6'},'addressType':'IPv6',"
        " 'endpoints':[{'addresses':['fd00::5'],'conditions':{'serving':false}}]}}",
        /* nulls read as absent wherever Go would leave a zero value */
        "{'type':'MODIFIED','object':{'metadata':{'name':'n','namespace':null,'resourceVersion':null,'labels':null,"
        " 'annotations':null},'addressType':'IPv4','ports':null,'endpoints':[{'addresses':['10.0.0.1',null],"
        " 'conditions':{'ready':null,'serving':null,'terminating':null},'hostname':null,'nodeName':null,'zone':null,"
        " 'hints':{'forZones':null,'forNodes':[]}}],'x':null}}",
        "{'type':'MODIFIED','object':{'metadata':{'name':'n','namespace':''},'addressType':'IPv4','endpoints':null,"
        " 'ports':[{'name':null,'port':null,'protocol':null},{'protocol':''}]}}",
        "{'type':'MODIFIED','object':{'metadata':{'name':'n','labels':{'kubernetes.io/service-name':null}},"
        " 'addressType':'IPv4','endpoints':[],'ports':[],'metadata2':{'name':1}}}",
        /* escapes both parsers read alike */
        "{'type':'MODIFIED','object':{'metadata':{'name':'e','labels':{'kubernetes.io\\/service-name':'w\\/x',"
        " 'q':'a\\'b\\\\c\\n'}},'addressType':'IPv4','endpoints':[]}}",
        /* white space between tokens */
        " {\t'type' : 'MODIFIED' ,\r\n 'object' : { 'metadata' : { 'name' : 'w' } , 'addressType' : 'IPv4' } }\n",
};

static void test_good_events_stream(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                char *f = q(good[i]);

                if (check(f, strlen(f)) != 0)
                        fail_msg("good event %zu not streamed: %s", i, f);
                free(f);
        }
}

static void test_stream_fields(void **state)
{
        struct k8s_endpoint_slice *s = NULL;
        char *f = q(good[1]);

        (void)state;
        assert_int_equal(k8s_slice_event_decode(f, strlen(f), &s), 0);
        assert_string_equal(s->ns, "prod");
        assert_string_equal(s->name, "web-abc");
        assert_string_equal(s->service_name, "web");
        assert_string_equal(s->resource_version, "7");
        assert_string_equal(s->trigger_time, "2024-01-01T00:00:00Z");
        assert_int_equal(s->n_endpoints, 2);
        assert_false(s->endpoints[0].ready);
        assert_true(s->endpoints[0].terminating);
        assert_int_equal(s->endpoints[0].n_hint_zones, 2);
        assert_string_equal(s->endpoints[0].hint_zones[1], "z2");
        assert_string_equal(s->endpoints[0].hint_nodes[0], "node-1");
        assert_true(s->endpoints[1].ready);
        assert_int_equal(s->n_ports, 5);
        assert_int_equal(s->ports[2].proto, IPPROTO_SCTP);
        assert_null(s->ports[2].name);
        assert_string_equal(s->ports[3].name, "x");
        assert_int_equal(s->ports[3].port, 0);
        k8s_slice_free(s);
        free(f);
}

#define OBJ(body) "{'type':'MODIFIED','object':{'metadata':{'name':'es1','namespace':'ns1'}," body "}}"

/* Left to the jansson path: want 0 when jansson decodes it, < 0 when not. */
static const struct {
        const char *frame;
        bool jansson_ok;
} left[] = {
        /* test_k8s's test_slice_errors, as events */
        { OBJ("'endpoints':[]"), false },
        { OBJ("'addressType':'IPX'"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{'addresses':['fd00::1']}]"), false },
        { OBJ("'addressType':'IPv6','endpoints':[{'addresses':['fd00::1']},{'addresses':['10.0.0.1']}]"), false },
        { OBJ("'addressType':'IPv6','endpoints':[{'addresses':['::ffff:10.0.0.1']}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{'addresses':[]}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{'addresses':'10.0.0.1'}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'conditions':{'ready':'true'}}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'conditions':{'terminating':1}}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'nodeName':[]}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'hints':{'forZones':[{'name':1}]}}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'hints':{'forNodes':[{}]}}]"), false },
        { OBJ("'addressType':'IPv4','ports':[{'port':-1}]"), false },
        { OBJ("'addressType':'IPv4','ports':[{'port':70000}]"), false },
        { OBJ("'addressType':'IPv4','ports':[{'port':80,'protocol':'ICMP'}]"), false },
        { OBJ("'addressType':'IPv4','ports':[{'port':80,'name':false}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':{}"), false },
        /* more bad fields */
        { OBJ("'addressType':'IPv4','ports':[{'port':80.0}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[null]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{'addresses':[null]}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'hostname':'a\\tb'}]"), false },
        { OBJ("'addressType':'IPv4','endpoints':[{'addresses':['10.0.0.1'],'hints':{'forZones':[{'name':''}]}}]"), false },
        { OBJ("'addressType':null"), false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':''},'addressType':'IPv4'}}", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':null},'addressType':'IPv4'}}", false },
        { "{'type':'MODIFIED','object':{'metadata':null,'addressType':'IPv4'}}", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'n','labels':[]},'addressType':'IPv4'}}", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'n','labels':{'kubernetes.io/service-name':1}},"
          "'addressType':'IPv4'}}", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'n','resourceVersion':7},'addressType':'IPv4'}}", false },
        /* good slices the fast path does not take */
        { OBJ("'addressType':'FQDN','endpoints':[{'addresses':['db.example.com']}]"), true },
        { OBJ("'addressType':'IPv4','ports':[{'port':80,'port':81}]"), true },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a','name':'b'},'addressType':'IPv4'}}", true },
        { "{'type':'ADDED','type':'MODIFIED','object':{'metadata':{'name':'a'},'addressType':'IPv4'}}", true },
        { "{'object':{'metadata':{'name':'a'},'addressType':'IPv4'},'type':'MODIFIED'}", true },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'\\u0061'},'addressType':'IPv4'}}", true },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a','labels':{'x':'\xc3\xa9'}},'addressType':'IPv4'}}", true },
        /* other events */
        { "{'type':'DELETED','object':{'metadata':{'name':'a'},'addressType':'IPv4'}}", false },
        { "{'type':'BOOKMARK','object':{'metadata':{'resourceVersion':'5'}}}", false },
        { "{'type':'ERROR','object':{'kind':'Status','code':410}}", false },
        { "{'type':'MODIFIED','object':'x'}", false },
        { "{'type':'MODIFIED'}", false },
        { "{'type':7,'object':{'metadata':{'name':'a'},'addressType':'IPv4'}}", false },
        /* JSON jansson refuses and yajl would take */
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a','labels':{'x':'\\ud800'}},'addressType':'IPv4'}}", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a','labels':{'x':'\\u0000'}},'addressType':'IPv4'}}", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a','labels':{'x':'\xc0\x80'}},'addressType':'IPv4'}}", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a','labels':{'x':'\xed\xa0\x80'}},'addressType':'IPv4'}}", false },
        { "{'type':'MODIFIED',\v'object':{'metadata':{'name':'a'},'addressType':'IPv4'}}", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a'},'addressType':'IPv4'}} x", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a'},'addressType':'IPv4'}", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a'},'addressType':'IPv4'}}'", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a'},'addressType':'IPv4'}} 1", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a'},'x':99999999999999999999,'addressType':'IPv4'}}", false },
        { "{'type':'MODIFIED','object':{'metadata':{'name':'a'},'x':1e999,'addressType':'IPv4'}}", false },
};

static void test_left_to_jansson(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++) {
                struct k8s_endpoint_slice *j = NULL;
                char *f = q(left[i].frame);
                int jr;

                if (check(f, strlen(f)) != -EAGAIN)
                        fail_msg("case %zu streamed: %s", i, f);
                jr = reference(f, strlen(f), &j);
                if ((jr == 0) != left[i].jansson_ok)
                        fail_msg("case %zu: jansson says %d: %s", i, jr, f);
                k8s_slice_free(j);
                free(f);
        }
}

/* Deeper than the fast path follows: jansson decides. */
static void test_deep_nesting(void **state)
{
        size_t depth = 3000, n = 0;
        char *f = malloc(2 * depth + 200);

        (void)state;
        assert_non_null(f);
        n += (size_t)sprintf(f, "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a\"},\"x\":");
        for (size_t i = 0; i < depth; i++)
                f[n++] = '[';
        for (size_t i = 0; i < depth; i++)
                f[n++] = ']';
        n += (size_t)sprintf(f + n, ",\"addressType\":\"IPv4\"}}");
        assert_int_equal(check(f, n), -EAGAIN);
        free(f);
}

static void count(int r, size_t *taken, size_t *left_n) { (*(r == 0 ? taken : left_n))++; }

/* Every one-byte change, insertion and cut of the good events: whatever the
 * fast path still takes, jansson must take the same way. */
static void test_mutations(void **state)
{
        static const char repl[] = "\"{}[],:n0-9.e\\ xtu\x01\x7f";
        size_t taken = 0, left_n = 0;

        (void)state;
        for (size_t g = 0; g < sizeof(good) / sizeof(good[0]); g++) {
                char *f = q(good[g]);
                size_t len = strlen(f);
                char *m = malloc(len + 2);

                assert_non_null(m);
                for (size_t i = 0; i < len; i++) {
                        for (size_t r = 0; r < sizeof(repl) - 1; r++) {
                                memcpy(m, f, len);
                                m[i] = repl[r];
                                count(check(m, len), &taken, &left_n);
                                /* inserted before byte i */
                                memcpy(m, f, i);
                                m[i] = repl[r];
                                memcpy(m + i + 1, f + i, len - i);
                                count(check(m, len + 1), &taken, &left_n);
                        }
                        /* byte i removed, and everything from i on cut */
                        memcpy(m, f, i);
                        memcpy(m + i, f + i + 1, len - i - 1);
                        count(check(m, len - 1), &taken, &left_n);
                        count(check(f, i), &taken, &left_n);
                }
                free(m);
                free(f);
        }
        /* Both ways happen, so the checks above compared something. */
        assert_true(taken > 1000);
        assert_true(left_n > 1000);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_good_events_stream),
                cmocka_unit_test(test_stream_fields),
                cmocka_unit_test(test_left_to_jansson),
                cmocka_unit_test(test_deep_nesting),
                cmocka_unit_test(test_mutations),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}

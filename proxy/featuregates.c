/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "featuregates.h"

#define A(n, d) { n, d, FG_ALPHA, false }
#define B(n, d) { n, d, FG_BETA, false }
#define GA(n) { n, true, FG_GA, false }
#define GAL(n) { n, true, FG_GA, true }

/* Sorted by name (strcmp): kube-proxy 1.26's --help list (alpha and beta,
 * with their defaults), then the GA gates it hides from that list but still
 * accepts. Where 1.26's lock of a GA gate is uncertain it is taken as
 * unlocked: accepting a value kube-proxy refuses costs nothing, refusing
 * one it accepts would break a swap. */
static const struct feature_gate gates[] = {
        B("APIListChunking", true),
        B("APIPriorityAndFairness", true),
        B("APIResponseCompression", true),
        A("APISelfSubjectReview", false),
        B("APIServerIdentity", true),
        A("APIServerTracing", false),
        GA("AdvancedAuditing"),
        A("AggregatedDiscoveryEndpoint", false),
        A("AllAlpha", false),
        B("AllBeta", false),
        B("AnyVolumeDataSource", true),
        B("AppArmor", true),
        GAL("CPUManager"),
        A("CPUManagerPolicyAlphaOptions", false),
        B("CPUManagerPolicyBetaOptions", true),
        B("CPUManagerPolicyOptions", true),
        GAL("CSIInlineVolume"),
        GAL("CSIMigration"),
        GAL("CSIMigrationAWS"),
        GAL("CSIMigrationAzureDisk"),
        GA("CSIMigrationAzureFile"),
        GAL("CSIMigrationGCE"),
        B("CSIMigrationPortworx", false),
        A("CSIMigrationRBD", false),
        GA("CSIMigrationvSphere"),
        A("CSINodeExpandSecret", false),
        GAL("CSIStorageCapacity"),
        A("CSIVolumeHealth", false),
        A("ComponentSLIs", false),
        GA("ConsistentHTTPGetHandlers"),
        A("ContainerCheckpoint", false),
        A("ContextualLogging", false),
        B("CronJobTimeZone", true),
        A("CrossNamespaceVolumeDataSource", false),
        A("CustomCPUCFSQuotaPeriod", false),
        B("CustomResourceValidationExpressions", true),
        GAL("DaemonSetUpdateSurge"),
        GAL("DelegateFSGroupToCSIDriver"),
        GAL("DevicePlugins"),
        GAL("DisableAcceleratorUsageMetrics"),
        A("DisableCloudProviders", false),
        A("DisableKubeletCloudCredentialProviders", false),
        B("DownwardAPIHugePages", true),
        GAL("DryRun"),
        A("DynamicResourceAllocation", false),
        GAL("EfficientWatchResumption"),
        GAL("EndpointSliceTerminatingCondition"),
        GAL("EphemeralContainers"),
        A("EventedPLEG", false),
        GA("ExecProbeTimeout"),
        B("ExpandedDNSConfig", true),
        B("ExperimentalHostUserNamespaceDefaulting", false),
        B("GRPCContainerProbe", true),
        B("GracefulNodeShutdown", true),
        B("GracefulNodeShutdownBasedOnPodPriority", true),
        A("HPAContainerMetrics", false),
        A("HPAScaleToZero", false),
        A("HonorPVReclaimPolicy", false),
        A("IPTablesOwnershipCleanup", false),
        GAL("IdentifyPodOS"),
        A("InTreePluginAWSUnregister", false),
        A("InTreePluginAzureDiskUnregister", false),
        A("InTreePluginAzureFileUnregister", false),
        A("InTreePluginGCEUnregister", false),
        A("InTreePluginOpenStackUnregister", false),
        A("InTreePluginPortworxUnregister", false),
        A("InTreePluginRBDUnregister", false),
        A("InTreePluginvSphereUnregister", false),
        B("JobMutableNodeSchedulingDirectives", true),
        B("JobPodFailurePolicy", true),
        B("JobReadyPods", true),
        GA("JobTrackingWithFinalizers"),
        A("KMSv2", false),
        GA("KubeletCredentialProviders"),
        A("KubeletInUserNamespace", false),
        B("KubeletPodResources", true),
        B("KubeletPodResourcesGetAllocatable", true),
        A("KubeletTracing", false),
        GA("LegacyServiceAccountTokenNoAutoGeneration"),
        A("LegacyServiceAccountTokenTracking", false),
        GAL("LocalStorageCapacityIsolation"),
        A("LocalStorageCapacityIsolationFSQuotaMonitoring", false),
        B("LogarithmicScaleDown", true),
        A("LoggingAlphaOptions", false),
        B("LoggingBetaOptions", true),
        A("MatchLabelKeysInPodTopologySpread", false),
        A("MaxUnavailableStatefulSet", false),
        B("MemoryManager", true),
        A("MemoryQoS", false),
        B("MinDomainsInPodTopologySpread", false),
        A("MinimizeIPTablesRestore", false),
        GAL("MixedProtocolLBService"),
        A("MultiCIDRRangeAllocator", false),
        GAL("NetworkPolicyEndPort"),
        A("NetworkPolicyStatus", false),
        B("NodeInclusionPolicyInPodTopologySpread", true),
        B("NodeOutOfServiceVolumeDetach", true),
        A("NodeSwap", false),
        B("OpenAPIEnums", true),
        B("OpenAPIV3", true),
        A("PDBUnhealthyPodEvictionPolicy", false),
        A("PodAndContainerStatsFromCRI", false),
        B("PodDeletionCost", true),
        B("PodDisruptionConditions", true),
        A("PodHasNetworkCondition", false),
        A("PodSchedulingReadiness", false),
        GAL("PodSecurity"),
        B("ProbeTerminationGracePeriod", true),
        A("ProcMountType", false),
        B("ProxyTerminatingEndpoints", true),
        A("QOSReserved", false),
        A("ReadWriteOncePod", false),
        A("RecoverVolumeExpansionFailure", false),
        B("RemainingItemCount", true),
        GAL("RemoveSelfLink"),
        B("RetroactiveDefaultStorageClass", true),
        B("RotateKubeletServerCertificate", true),
        A("SELinuxMountReadWriteOncePod", false),
        B("SeccompDefault", true),
        GA("ServerSideApply"),
        B("ServerSideFieldValidation", true),
        GA("ServiceIPStaticSubrange"),
        GA("ServiceInternalTrafficPolicy"),
        B("SizeMemoryBackedVolumes", true),
        A("StatefulSetAutoDeletePVC", false),
        GAL("StatefulSetMinReadySeconds"),
        A("StatefulSetStartOrdinal", false),
        A("StorageVersionAPI", false),
        B("StorageVersionHash", true),
        B("TopologyAwareHints", true),
        B("TopologyManager", true),
        A("TopologyManagerPolicyAlphaOptions", false),
        B("TopologyManagerPolicyBetaOptions", false),
        A("TopologyManagerPolicyOptions", false),
        A("UserNamespacesStatelessPodsSupport", false),
        A("ValidatingAdmissionPolicy", false),
        A("VolumeCapacityPriority", false),
        A("WinDSR", false),
        B("WinOverlay", true),
        A("WindowsHostNetwork", true),
        GA("WindowsHostProcessContainers"),
};

static int gate_cmp(const void *key, const void *elem)
{
        return strcmp(key, ((const struct feature_gate *)elem)->name);
}

const struct feature_gate *feature_gate_find(const char *name)
{
        return bsearch(name, gates, sizeof(gates) / sizeof(gates[0]), sizeof(gates[0]), gate_cmp);
}

const char *feature_gate_stage_name(enum fg_stage s)
{
        switch (s) {
        case FG_ALPHA:
                return "ALPHA";
        case FG_BETA:
                return "BETA";
        case FG_GA:
                return "GA";
        case FG_DEPRECATED:
                break;
        }
        return "DEPRECATED";
}

int feature_gates_set(struct feature_gate_value **list, size_t *n, const char *name, bool value, char *why,
                      size_t whylen)
{
        const struct feature_gate *g = feature_gate_find(name);
        struct feature_gate_value *nl;

        if (!g) {
                snprintf(why, whylen, "unrecognized feature gate: %s", name);
                return -EINVAL;
        }
        if (g->locked && value != g->def) {
                snprintf(why, whylen, "cannot set feature gate %s to %s, feature is locked to %s", name,
                         value ? "true" : "false", g->def ? "true" : "false");
                return -EINVAL;
        }
        for (size_t i = 0; i < *n; i++) {
                if ((*list)[i].gate == g) {
                        (*list)[i].value = value;
                        return 0;
                }
        }
        nl = realloc(*list, (*n + 1) * sizeof(*nl));
        if (!nl)
                return -ENOMEM;
        nl[*n] = (struct feature_gate_value){ .gate = g, .value = value };
        *list = nl;
        (*n)++;
        return 0;
}

bool feature_gates_enabled(const struct feature_gate_value *list, size_t n, const char *name)
{
        const struct feature_gate *g = feature_gate_find(name);
        bool v;

        if (!g)
                return false;
        for (size_t i = 0; i < n; i++)
                if (list[i].gate == g)
                        return list[i].value;
        v = g->def;
        for (size_t i = 0; i < n; i++) {
                if (g->stage == FG_ALPHA && strcmp(list[i].gate->name, "AllAlpha") == 0)
                        v = list[i].value;
                if (g->stage == FG_BETA && strcmp(list[i].gate->name, "AllBeta") == 0)
                        v = list[i].value;
        }
        return v;
}

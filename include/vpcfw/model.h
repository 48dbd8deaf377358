/* The configuration as read from the EC2 API's JSON, validated field by field
 * but not yet cross-checked or compiled.  config.c builds it; policy.c
 * resolves references between objects and compiles it for the packet path.
 *
 * Every object carries `where` (file and JSON path, e.g.
 * "vpc.json" / "SecurityGroups[2]") so that a later cross-object check can
 * name the place.  All memory belongs to model.arena. */
#ifndef VPCFW_MODEL_H
#define VPCFW_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "vpcfw/addr.h"
#include "vpcfw/arena.h"

struct where {
	const char *file;
	const char *path;
};

/* A rule's protocol is an IP protocol number 0..255 (proto.h names those
 * the engine treats apart) or RULE_PROTO_ALL, AWS's "-1": every protocol. */
enum { RULE_PROTO_ALL = -1 };

struct m_vpc {
	const char *id;
	const char *owner_id;           /* may be NULL */
	struct cidr *cidrs;             /* IPv4 then IPv6; cidrs[0] is the primary
	                                   IPv4 CIDR when has_primary4 */
	int n_cidrs;
	bool has_primary4;
	struct where where;
};

struct m_subnet {
	const char *id;
	const char *vpc_id;             /* may be NULL */
	const char *az;                 /* AvailabilityZone, may be NULL */
	const char *az_id;              /* AvailabilityZoneId, may be NULL */
	const char *owner_id;           /* may be NULL */
	bool has4;
	struct cidr cidr4;              /* CidrBlock */
	struct cidr *cidr6;             /* Ipv6CidrBlockAssociationSet[].Ipv6CidrBlock */
	int n_cidr6;
	struct where where;
};

/* One NACL entry (API NetworkAclEntry). */
struct m_nacl_entry {
	uint32_t number;                /* 1..32766, or 32767/32768 for the '*' rules */
	bool egress;
	bool allow;
	int proto;                      /* RULE_PROTO_ALL or 0..255 */
	bool has_ports;                 /* PortRange given (used for 6 and 17 only) */
	uint16_t port_from, port_to;
	bool has_icmp;                  /* IcmpTypeCode given (used for 1 and 58 only) */
	int icmp_type, icmp_code;       /* -1 = all */
	struct cidr cidr;               /* CidrBlock or Ipv6CidrBlock */
	struct where where;
};

struct m_nacl {
	const char *id;
	const char *vpc_id;             /* may be NULL */
	bool is_default;
	struct m_nacl_entry *entries;
	int n_entries;
	const char **subnets;           /* Associations[].SubnetId */
	struct where *subnet_where;     /* where each association is */
	int n_subnets;
	struct where where;
};

enum peer_kind { PEER_CIDR, PEER_PREFIX_LIST, PEER_GROUP };

struct m_peer {
	enum peer_kind kind;
	struct cidr cidr;               /* PEER_CIDR */
	const char *ref;                /* PEER_PREFIX_LIST / PEER_GROUP: the id */
	struct where where;
};

/* One IpPermission.  from/to are ports for tcp/udp, type/code for
 * icmp/icmpv6; -1 means all.  For other protocols they are ignored. */
struct m_sg_rule {
	int proto;                      /* RULE_PROTO_ALL or 0..255 */
	int from, to;
	struct m_peer *peers;
	int n_peers;
	int index;                      /* position in IpPermissions[Egress] */
	const char *rule_id;            /* SecurityGroupRuleId (describe-security-group-rules),
					   or NULL */
	/* The counters' stable name (policy_build): rule_id when the data has
	 * it, else "rule-" and 12 hex digits of a hash of what the rule
	 * matches (protocol, ports, peers in any order), so that editing other
	 * rules never renames it; a repeat in its group and direction gets
	 * "-2", "-3", ... */
	const char *label;
	struct where where;
};

struct m_sg {
	const char *id;
	const char *name;               /* may be NULL */
	const char *vpc_id;             /* may be NULL */
	struct m_sg_rule *in;           /* IpPermissions */
	int n_in;
	struct m_sg_rule *out;          /* IpPermissionsEgress */
	int n_out;
	struct where where;
};

struct m_eni_addr {
	struct ip_addr addr;
	int family;
	bool primary;
};

/* Per-interface ConnectionTrackingConfiguration; 0 = AWS default. */
struct m_ct_timeouts {
	uint32_t tcp_established;       /* TcpEstablishedTimeout, 60..432000 */
	uint32_t udp_stream;            /* UdpStreamTimeout, 60..180 */
	uint32_t udp;                   /* UdpTimeout, 30..60 */
};

struct m_eni {
	const char *id;
	const char *subnet_id;          /* may be NULL */
	const char *vpc_id;             /* may be NULL */
	const char *owner_id;           /* may be NULL */
	const char *instance_id;        /* Attachment.InstanceId, may be NULL */
	const char *type;               /* InterfaceType, may be NULL (config.c
	                                   checks it against the API's values) */
	struct m_eni_addr *addrs;       /* private IPv4 (primary first) and IPv6 */
	int n_addrs;
	struct cidr *prefixes;          /* Ipv4Prefixes[].Ipv4Prefix, then
	                                   Ipv6Prefixes[].Ipv6Prefix: delegated */
	struct where *prefix_where;     /* where each prefix is */
	int n_prefixes;
	const char **groups;            /* Groups[].GroupId */
	struct where *group_where;
	int n_groups;
	bool source_dest_check;         /* default true */
	struct m_ct_timeouts timeouts;
	struct where where;
};

struct m_prefix_list {
	const char *id;
	struct cidr *cidrs;
	int n_cidrs;
	struct where where;
};

/* FlowLogs[] as describe-flow-logs prints them (SPEC §7).  LogFormat is kept
 * as text; flowlog.c parses and validates it. */
struct m_flowlog {
	const char *id;                 /* FlowLogId */
	const char *resource_id;        /* VPC, subnet or interface id */
	const char *traffic_type;       /* "ACCEPT" | "REJECT" | "ALL" */
	const char *log_format;         /* NULL: the default version-2 format */
	uint32_t max_aggregation_interval; /* 60 | 600, default 600 */
	const char *destination_type;   /* "s3" (default) | "cloud-watch-logs" | ... */
	const char *destination;        /* LogDestination, may be NULL */
	const char *log_group_name;     /* LogGroupName, may be NULL */
	/* DestinationOptions (s3 only) */
	bool parquet;                   /* FileFormat "parquet" (default "plain-text") */
	bool hive;                      /* HiveCompatiblePartitions */
	bool per_hour;                  /* PerHourPartition */
	struct where where;
};

/* Traffic mirroring (SPEC §8): describe-traffic-mirror-*
 * as printed, and the Vpcfw keys that turn targets into files or addresses. */
struct m_mirror_rule {
	uint32_t number;                /* RuleNumber 1..32766 */
	bool accept;                    /* RuleAction accept | reject */
	int proto;                      /* Protocol; RULE_PROTO_ALL when absent */
	bool has_sports, has_dports;    /* SourcePortRange / DestinationPortRange */
	uint16_t sport_from, sport_to, dport_from, dport_to;
	struct cidr src, dst;           /* SourceCidrBlock, DestinationCidrBlock */
	struct where where;
};

struct m_mirror_filter {
	const char *id;                 /* TrafficMirrorFilterId */
	struct m_mirror_rule *in;       /* IngressFilterRules */
	int n_in;
	struct m_mirror_rule *out;      /* EgressFilterRules */
	int n_out;
	bool amazon_dns;                /* NetworkServices has "amazon-dns" */
	struct where where;
};

struct m_mirror_target {
	const char *id;                 /* TrafficMirrorTargetId */
	const char *eni_id;             /* NetworkInterfaceId; NULL for a load balancer */
	const char *lb;                 /* NetworkLoadBalancerArn or
	                                   GatewayLoadBalancerEndpointId, may be NULL */
	struct where where;
};

struct m_mirror_session {
	const char *id;                 /* TrafficMirrorSessionId, may be NULL */
	const char *eni_id;             /* NetworkInterfaceId: the source */
	const char *target_id;
	const char *filter_id;
	uint32_t number;                /* SessionNumber 1..32766 */
	uint32_t vni;                   /* VirtualNetworkId, 24 bits */
	uint32_t packet_length;         /* PacketLength; 0: the whole packet */
	struct where where;
};

/* Vpcfw.PcapTargets[]: a target written to a pcap file instead of VXLAN. */
struct m_mirror_pcap {
	const char *target_id;
	const char *path;
	uint64_t rotate_bytes;          /* RotateBytes; 0: the default */
	struct where where;
};

/* Vpcfw.MirrorTargetAddresses[]: where a target's VXLAN goes. */
struct m_mirror_addr {
	const char *target_id;
	struct ip_addr addr;
	int family;
	struct where where;
};

/* Vpcfw.DropCapture: refused packets to a pcap file (NFLOG link type). */
struct m_mirror_dropcap {
	const char *path;               /* NULL: off */
	uint32_t snap_length;           /* SnapLength; 0: the default */
	uint64_t rotate_bytes;          /* RotateBytes; 0: the default */
	struct where where;
};

/* Vpcfw.Sync: the HA pair's flow-table sync (include/vpcfw/sync.h). */
struct m_sync {
	bool enabled;                   /* the Sync object is given */
	uint32_t node_id;               /* NodeId, 1 .. 2^32-1, differs between the two */
	struct ip_addr peer;            /* Peer: the other gateway's address on the link */
	int peer_family;
	struct ip_addr listen;          /* Listen: this gateway's; family 0: any */
	int listen_family;
	uint32_t port;                  /* Port, default 7710: both ends */
	const char *key_file;           /* KeyFile */
	uint32_t message_bytes;         /* MessageBytes, default 1400 */
	uint32_t max_clock_skew;        /* MaxClockSkew, seconds; 0: not checked */
	uint32_t ring_entries;          /* RingEntries: changes queued per worker */
	struct where where;
};

struct m_binding {
	const char *eni_id;
	const char *device;
	struct where where;
};

/* The `Vpcfw` section: what AWS has no API for.  Defaults are set by
 * model_init(); config.c documents every key in one table. */
struct m_vpcfw {
	uint16_t *queues;               /* NFQUEUE numbers */
	int n_queues;
	struct m_binding *bindings;     /* InterfaceBindings */
	int n_bindings;
	uint32_t conntrack_max;         /* ConntrackMax, default 262144 */
	bool admit_related_icmp;        /* AdmitRelatedIcmp, default false */
	bool tcp_be_liberal;            /* TcpBeLiberal, default false */
	bool tcp_loose;                 /* TcpLoose, default true */
	bool fail_open;                 /* FailOpen, default false */
	/* flood fairness, beyond AWS (0: off) */
	uint32_t per_source_rate;       /* PerSourceNewFlowsPerSecond */
	uint32_t per_source_burst;      /* PerSourceNewFlowBurst; 0: the rate */
	uint32_t per_source_share;      /* PerSourceConntrackPercent */
	uint32_t per_source_v6_prefix;  /* PerSourceIpv6PrefixLength, default 128 */
	const char *flow_log_dir;       /* FlowLogDirectory */
	uint32_t flow_log_rotate_seconds; /* FlowLogRotateSeconds, default 300 */
	uint32_t flow_log_rotate_bytes; /* FlowLogRotateBytes, default 75 MB */
	const char *control_socket;     /* ControlSocket */
	const char *region;             /* Region */
	const char *account_id;         /* AccountId (flow logs) */
	const char *decision_log;       /* DecisionLog */
	/* control socket */
	const char *admin_group;        /* Access.AdminGroup */
	const char *reader_group;       /* Access.ReaderGroup */
	const char *read_only_socket;   /* ReadOnlySocket */
	bool read_only_socket_public;   /* ReadOnlySocketPublic, default false */
	const char *metrics_file;       /* MetricsFile */
	uint32_t metrics_interval;      /* MetricsInterval, seconds */
	const char *state_file;         /* StateFile: the flow table across restarts */
	uint32_t state_sync_interval;   /* StateSyncInterval, seconds; 0: at the stop only */
	bool offload;                   /* Offload, default true (issue #16) */
	bool offload_explicit;          /* Offload written in a file: what would
					   leave it without effect is worth a warning */
	uint32_t offload_mark;          /* OffloadMark: one conntrack-mark bit, 0x40000000 */
	uint32_t offload_after;         /* OffloadAfterPackets: offloadable packets a
					   flow shows on the queue before it is offered, 8 */
	/* mirroring */
	struct m_mirror_pcap *pcap_targets;     /* PcapTargets */
	int n_pcap_targets;
	struct m_mirror_addr *mirror_addrs;     /* MirrorTargetAddresses */
	int n_mirror_addrs;
	struct m_mirror_dropcap drop_capture;   /* DropCapture */
	struct m_sync sync;             /* Sync */
};

struct model {
	struct arena arena;
	struct m_vpc *vpcs;             int n_vpcs;
	struct m_subnet *subnets;       int n_subnets;
	struct m_nacl *nacls;           int n_nacls;
	struct m_sg *sgs;               int n_sgs;
	struct m_eni *enis;             int n_enis;
	struct m_prefix_list *pls;      int n_pls;
	struct m_flowlog *flowlogs;     int n_flowlogs;
	struct m_mirror_filter *mirror_filters;   int n_mirror_filters;
	struct m_mirror_target *mirror_targets;   int n_mirror_targets;
	struct m_mirror_session *mirror_sessions; int n_mirror_sessions;
	struct m_vpcfw vpcfw;
};

#endif

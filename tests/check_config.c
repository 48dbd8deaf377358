/* The configuration loader (src/config.c): every bad value is reported with
 * file, JSON path and value; good input lands in the model as SPEC §1, §3
 * and §4 say.  JSON in this file is written with ' for " to stay readable. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkmain.h"
#include "vpcfw/conf.h"
#include "vpcfw/proto.h"

static struct model m;
static struct diag d;

static void setup(void)
{
	model_init(&m);
	diag_init(&d);
}

static void teardown(void)
{
	model_free(&m);
	diag_free(&d);
}

/* ' -> " */
static char *json(const char *text)
{
	char *s = strdup(text);
	ck_assert_ptr_nonnull(s);
	for (char *p = s; *p; p++)
		if (*p == '\'')
			*p = '"';
	return s;
}

static size_t load(const char *name, const char *text)
{
	char *s = json(text);
	size_t n = config_load_buffer(&m, name, s, strlen(s), &d);
	free(s);
	return n;
}

static void dump(void)
{
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "  %s: %s\n", d.msgs[i].error ? "error" : "warning", d.msgs[i].text);
}

/* Is there a message of this kind with exactly this text (or, when text
 * ends with '*', starting with the rest)? */
static bool has(bool error, const char *text)
{
	size_t len = strlen(text);
	bool prefix = len && text[len - 1] == '*';
	for (size_t i = 0; i < d.n; i++)
		if (d.msgs[i].error == error &&
		    (prefix ? strncmp(d.msgs[i].text, text, len - 1) == 0
			    : strcmp(d.msgs[i].text, text) == 0))
			return true;
	fprintf(stderr, "expected %s \"%s\"; got:\n", error ? "error" : "warning", text);
	dump();
	return false;
}

static void assert_clean(void)
{
	if (d.n)
		dump();
	ck_assert_uint_eq(d.n, 0);
}

/* ------------------------------------------------------------ bad input */

#define SG(perm) "{'SecurityGroups':[{'GroupId':'sg-1','IpPermissions':[" perm "]}]}"
#define NACL(entry) "{'NetworkAcls':[{'NetworkAclId':'acl-1','Entries':[" entry "]}]}"
#define ENTRY(rest) "{'RuleNumber':100,'Egress':false,'RuleAction':'allow','Protocol':'-1'," rest "}"
#define ENI(rest) "{'NetworkInterfaces':[{'NetworkInterfaceId':'eni-1'," rest "}]}"

static const struct bad {
	const char *name;
	const char *json;
	bool error;             /* false: a warning */
	const char *msg;        /* "t.json: PATH: message"; a final '*' matches any rest */
} bads[] = {
	/* types and shapes */
	{ "invalid JSON", "{'Vpcs': [}", true, "t.json: line 1 column 11: invalid JSON: *" },
	{ "duplicate top-level key", "{'Vpcs':[],'Subnets':[],'Vpcs':[]}", true,
	  "t.json: Vpcs: duplicate key \"Vpcs\" (line 1 column 30): each key may appear once in an object" },
	{ "duplicate key deep, after strings with brackets and escapes",
	  "{'Vpcs':[{'VpcId':'v,[{:}]\\'x'},{'Tags':[{}, {'a.b':1,'a.b':2}]}]}", true,
	  "t.json: Vpcs[1].Tags[1].a.b: duplicate key \"a.b\"*" },
	{ "top level not an object", "[1]", true, "t.json: the top level is [...], not an object" },
	{ "list not a list", "{'Vpcs':{}}", true, "t.json: Vpcs: {} is not a list" },
	{ "element not an object", "{'Vpcs':[5]}", true, "t.json: Vpcs[0]: 5 is not an object" },
	{ "missing id", "{'Vpcs':[{'CidrBlock':'10.0.0.0/16'}]}", true, "t.json: Vpcs[0]: VpcId is missing" },
	{ "id not a string", "{'Vpcs':[{'VpcId':5}]}", true, "t.json: Vpcs[0].VpcId: 5 is not a string" },
	{ "empty id", "{'Subnets':[{'SubnetId':''}]}", true, "t.json: Subnets[0].SubnetId: \"\" is not an id" },
	{ "string for a number", SG("{'IpProtocol':'tcp','FromPort':'abc','ToPort':80}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].FromPort: \"abc\" is not a number" },
	{ "fraction for a number", SG("{'IpProtocol':'tcp','FromPort':1.5,'ToPort':80}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].FromPort: 1.5 is not a whole number" },
	{ "bool not a bool", "{'NetworkAcls':[{'NetworkAclId':'acl-1','IsDefault':'yes'}]}", true,
	  "t.json: NetworkAcls[0].IsDefault: \"yes\" is not true or false" },

	/* CIDRs */
	{ "subnet /33 (scenario 06)", "{'Subnets':[{'SubnetId':'s-1','CidrBlock':'10.0.1.0/33'}]}", true,
	  "t.json: Subnets[0].CidrBlock: \"10.0.1.0/33\" is not an IPv4 CIDR block" },
	{ "IPv6 in CidrBlock", "{'Vpcs':[{'VpcId':'v','CidrBlock':'2001:db8::/32'}]}", true,
	  "t.json: Vpcs[0].CidrBlock: \"2001:db8::/32\" is not an IPv4 CIDR block" },
	{ "IPv4 in Ipv6CidrBlock",
	  "{'Subnets':[{'SubnetId':'s','Ipv6CidrBlockAssociationSet':[{'Ipv6CidrBlock':'10.0.0.0/8'}]}]}", true,
	  "t.json: Subnets[0].Ipv6CidrBlockAssociationSet[0].Ipv6CidrBlock: \"10.0.0.0/8\" is not an IPv6 CIDR block" },
	{ "no prefix length", SG("{'IpProtocol':'-1','IpRanges':[{'CidrIp':'1.2.3.4'}]}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].IpRanges[0].CidrIp: \"1.2.3.4\" is not an IPv4 CIDR block" },
	{ "IPv6 in IpRanges", SG("{'IpProtocol':'-1','IpRanges':[{'CidrIp':'::/0'}]}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].IpRanges[0].CidrIp: \"::/0\" is not an IPv4 CIDR block" },
	{ "IPv4 in Ipv6Ranges", SG("{'IpProtocol':'-1','Ipv6Ranges':[{'CidrIpv6':'0.0.0.0/0'}]}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].Ipv6Ranges[0].CidrIpv6: \"0.0.0.0/0\" is not an IPv6 CIDR block" },
	{ "range without CidrIp", SG("{'IpProtocol':'-1','IpRanges':[{'Description':'x'}]}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].IpRanges[0]: CidrIp is missing" },

	/* security-group rules (security-group-rules) */
	{ "port 70000", SG("{'IpProtocol':'tcp','FromPort':80,'ToPort':70000}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].ToPort: 70000 is not a port" },
	{ "port -2", SG("{'IpProtocol':'udp','FromPort':-2,'ToPort':80}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].FromPort: -2 is not a port" },
	{ "FromPort > ToPort", SG("{'IpProtocol':'tcp','FromPort':90,'ToPort':80}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0]: FromPort 90 is greater than ToPort 80" },
	{ "unknown protocol", SG("{'IpProtocol':'tcpx'}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].IpProtocol: \"tcpx\" is not a protocol (tcp, udp, icmp, icmpv6, -1 or 0-255)" },
	{ "protocol 256", SG("{'IpProtocol':'256'}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].IpProtocol: \"256\" is not a protocol (tcp, udp, icmp, icmpv6, -1 or 0-255)" },
	{ "missing protocol", SG("{'FromPort':1,'ToPort':2}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0]: IpProtocol is missing" },
	{ "ICMP type 256", SG("{'IpProtocol':'icmp','FromPort':256,'ToPort':-1}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].FromPort: 256 is not an ICMP type (-1 to 255)" },
	{ "ICMP code 300", SG("{'IpProtocol':'icmpv6','FromPort':1,'ToPort':300}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].ToPort: 300 is not an ICMP code (-1 to 255)" },
	{ "pair without any id", SG("{'IpProtocol':'-1','UserIdGroupPairs':[{'UserId':'1'}]}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].UserIdGroupPairs[0]: GroupId is missing" },
	{ "prefix list id not a string", SG("{'IpProtocol':'-1','PrefixListIds':[{'PrefixListId':7}]}"), true,
	  "t.json: SecurityGroups[0].IpPermissions[0].PrefixListIds[0].PrefixListId: 7 is not a string" },
	{ "rules not a list", "{'SecurityGroups':[{'GroupId':'sg-1','IpPermissionsEgress':{}}]}", true,
	  "t.json: SecurityGroups[0].IpPermissionsEgress: {} is not a list" },
	{ "SecurityGroupRules without GroupId", "{'SecurityGroupRules':[{'IsEgress':false,'IpProtocol':'-1'}]}",
	  true, "t.json: SecurityGroupRules[0]: GroupId is missing" },
	{ "SecurityGroupRules bad port",
	  "{'SecurityGroupRules':[{'GroupId':'sg-9','IsEgress':true,'IpProtocol':'tcp','FromPort':0,'ToPort':65536}]}",
	  true, "t.json: SecurityGroupRules[0].ToPort: 65536 is not a port" },

	/* NACL entries (API NetworkAclEntry) */
	{ "rule number 0", NACL("{'RuleNumber':0,'Egress':false,'RuleAction':'allow','Protocol':'-1','CidrBlock':'0.0.0.0/0'}"),
	  true, "t.json: NetworkAcls[0].Entries[0].RuleNumber: 0 is not a rule number (1-32766)" },
	{ "rule number 32769", NACL("{'RuleNumber':32769,'Egress':false,'RuleAction':'allow','Protocol':'-1','CidrBlock':'0.0.0.0/0'}"),
	  true, "t.json: NetworkAcls[0].Entries[0].RuleNumber: 32769 is not a rule number (1-32766)" },
	{ "32767 with IPv6", NACL("{'RuleNumber':32767,'Egress':false,'RuleAction':'deny','Protocol':'-1','Ipv6CidrBlock':'::/0'}"),
	  true, "t.json: NetworkAcls[0].Entries[0].RuleNumber: 32767 is not a rule number of an IPv6 entry" },
	{ "32768 with IPv4", NACL("{'RuleNumber':32768,'Egress':false,'RuleAction':'deny','Protocol':'-1','CidrBlock':'0.0.0.0/0'}"),
	  true, "t.json: NetworkAcls[0].Entries[0].RuleNumber: 32768 is not a rule number of an IPv4 entry" },
	{ "missing rule number", NACL("{'Egress':false,'RuleAction':'allow','Protocol':'-1','CidrBlock':'0.0.0.0/0'}"),
	  true, "t.json: NetworkAcls[0].Entries[0]: RuleNumber is missing" },
	{ "action permit", NACL("{'RuleNumber':1,'Egress':false,'RuleAction':'permit','Protocol':'-1','CidrBlock':'0.0.0.0/0'}"),
	  true, "t.json: NetworkAcls[0].Entries[0].RuleAction: \"permit\" is not allow or deny" },
	{ "protocol foo", NACL("{'RuleNumber':1,'Egress':false,'RuleAction':'allow','Protocol':'foo','CidrBlock':'0.0.0.0/0'}"),
	  true, "t.json: NetworkAcls[0].Entries[0].Protocol: \"foo\" is not a protocol (tcp, udp, icmp, icmpv6, -1 or 0-255)" },
	{ "protocol -2", NACL("{'RuleNumber':1,'Egress':false,'RuleAction':'allow','Protocol':-2,'CidrBlock':'0.0.0.0/0'}"),
	  true, "t.json: NetworkAcls[0].Entries[0].Protocol: -2 is not a protocol (tcp, udp, icmp, icmpv6, -1 or 0-255)" },
	{ "both CIDRs", NACL(ENTRY("'CidrBlock':'0.0.0.0/0','Ipv6CidrBlock':'::/0'")), true,
	  "t.json: NetworkAcls[0].Entries[0]: both CidrBlock and Ipv6CidrBlock are given" },
	{ "no CIDR", NACL(ENTRY("'PortRange':{'From':1,'To':2}")), true,
	  "t.json: NetworkAcls[0].Entries[0]: neither CidrBlock nor Ipv6CidrBlock is given" },
	{ "Egress missing", NACL("{'RuleNumber':1,'RuleAction':'allow','Protocol':'-1','CidrBlock':'0.0.0.0/0'}"),
	  true, "t.json: NetworkAcls[0].Entries[0]: Egress is missing" },
	{ "Egress not a bool", NACL("{'RuleNumber':1,'Egress':1,'RuleAction':'allow','Protocol':'-1','CidrBlock':'0.0.0.0/0'}"),
	  true, "t.json: NetworkAcls[0].Entries[0].Egress: 1 is not true or false" },
	{ "PortRange From > To", NACL(ENTRY("'CidrBlock':'0.0.0.0/0','PortRange':{'From':100,'To':99}")), true,
	  "t.json: NetworkAcls[0].Entries[0].PortRange: From 100 is greater than To 99" },
	{ "PortRange To 65536", NACL(ENTRY("'CidrBlock':'0.0.0.0/0','PortRange':{'From':1,'To':65536}")), true,
	  "t.json: NetworkAcls[0].Entries[0].PortRange.To: 65536 is not a port" },
	{ "PortRange without To", NACL(ENTRY("'CidrBlock':'0.0.0.0/0','PortRange':{'From':1}")), true,
	  "t.json: NetworkAcls[0].Entries[0].PortRange: To is missing" },
	{ "ICMP type 256", NACL(ENTRY("'CidrBlock':'0.0.0.0/0','IcmpTypeCode':{'Type':256,'Code':0}")), true,
	  "t.json: NetworkAcls[0].Entries[0].IcmpTypeCode.Type: 256 is not an ICMP type (-1 to 255)" },
	{ "association without subnet",
	  "{'NetworkAcls':[{'NetworkAclId':'acl-1','Associations':[{'NetworkAclId':'acl-1'}]}]}", true,
	  "t.json: NetworkAcls[0].Associations[0]: SubnetId is missing" },

	/* interfaces */
	{ "bad private address", ENI("'PrivateIpAddress':'10.0.0.300'"), true,
	  "t.json: NetworkInterfaces[0].PrivateIpAddress: \"10.0.0.300\" is not an IPv4 address" },
	{ "IPv4 as Ipv6Address", ENI("'Ipv6Addresses':[{'Ipv6Address':'10.0.0.1'}]"), true,
	  "t.json: NetworkInterfaces[0].Ipv6Addresses[0].Ipv6Address: \"10.0.0.1\" is not an IPv6 address" },
	{ "TcpEstablishedTimeout 59", ENI("'ConnectionTrackingConfiguration':{'TcpEstablishedTimeout':59}"), true,
	  "t.json: NetworkInterfaces[0].ConnectionTrackingConfiguration.TcpEstablishedTimeout: 59 is out of range (60 to 432000)" },
	{ "UdpStreamTimeout 181", ENI("'ConnectionTrackingConfiguration':{'UdpStreamTimeout':181}"), true,
	  "t.json: NetworkInterfaces[0].ConnectionTrackingConfiguration.UdpStreamTimeout: 181 is out of range (60 to 180)" },
	{ "UdpTimeout 29", ENI("'ConnectionTrackingConfiguration':{'UdpTimeout':29}"), true,
	  "t.json: NetworkInterfaces[0].ConnectionTrackingConfiguration.UdpTimeout: 29 is out of range (30 to 60)" },
	{ "group without id", ENI("'Groups':[{'GroupName':'web'}]"), true,
	  "t.json: NetworkInterfaces[0].Groups[0]: GroupId is missing" },
	{ "SourceDestCheck string", ENI("'SourceDestCheck':'false'"), true,
	  "t.json: NetworkInterfaces[0].SourceDestCheck: \"false\" is not true or false" },

	/* flow logs (SPEC §7) */
	{ "TrafficType", "{'FlowLogs':[{'FlowLogId':'fl-1','ResourceId':'vpc-1','TrafficType':'SOME'}]}", true,
	  "t.json: FlowLogs[0].TrafficType: \"SOME\" is not ACCEPT, REJECT or ALL" },
	{ "MaxAggregationInterval 300",
	  "{'FlowLogs':[{'FlowLogId':'fl-1','ResourceId':'vpc-1','TrafficType':'ALL','MaxAggregationInterval':300}]}",
	  true, "t.json: FlowLogs[0].MaxAggregationInterval: 300 is not 60 or 600" },
	{ "flow log without resource", "{'FlowLogs':[{'FlowLogId':'fl-1','TrafficType':'ALL'}]}", true,
	  "t.json: FlowLogs[0]: ResourceId is missing" },

	/* prefix lists */
	{ "managed entry bad CIDR", "{'ManagedPrefixLists':[{'PrefixListId':'pl-1','Entries':[{'Cidr':'x/8'}]}]}",
	  true, "t.json: ManagedPrefixLists[0].Entries[0].Cidr: \"x/8\" is not a CIDR block" },
	{ "AWS prefix list bad CIDR", "{'PrefixLists':[{'PrefixListId':'pl-1','Cidrs':['1.2.3.0/24', 5]}]}",
	  true, "t.json: PrefixLists[0].Cidrs[1]: 5 is not a string" },

	/* the Vpcfw section */
	{ "ConntrackMax 0", "{'Vpcfw':{'ConntrackMax':0}}", true,
	  "t.json: Vpcfw.ConntrackMax: 0 is out of range (1 to 67108864)" },
	{ "PerSourceConntrackPercent 101", "{'Vpcfw':{'PerSourceConntrackPercent':101}}", true,
	  "t.json: Vpcfw.PerSourceConntrackPercent: 101 is out of range (0 to 100)" },
	{ "PerSourceNewFlowsPerSecond negative", "{'Vpcfw':{'PerSourceNewFlowsPerSecond':-1}}", true,
	  "t.json: Vpcfw.PerSourceNewFlowsPerSecond: -1 is out of range (0 to 10000000)" },
	{ "PerSourceNewFlowBurst text", "{'Vpcfw':{'PerSourceNewFlowBurst':'10'}}", true,
	  "t.json: Vpcfw.PerSourceNewFlowBurst: \"10\" is not a number" },
	{ "PerSourceIpv6PrefixLength 0", "{'Vpcfw':{'PerSourceIpv6PrefixLength':0}}", true,
	  "t.json: Vpcfw.PerSourceIpv6PrefixLength: 0 is out of range (1 to 128)" },
	{ "PerSourceNewFlowBurst without a rate", "{'Vpcfw':{'PerSourceNewFlowBurst':10}}", false,
	  "t.json: Vpcfw.PerSourceNewFlowBurst: 10 has no effect without PerSourceNewFlowsPerSecond" },
	{ "OffloadMark two bits", "{'Vpcfw':{'Offload':true,'OffloadMark':3}}", true,
	  "t.json: Vpcfw.OffloadMark: 3 (0x3) is not a single bit" },
	{ "OffloadMark 0", "{'Vpcfw':{'OffloadMark':0}}", true,
	  "t.json: Vpcfw.OffloadMark: 0 is out of range (1 to 4294967295)" },
	{ "Offload text", "{'Vpcfw':{'Offload':'yes'}}", true,
	  "t.json: Vpcfw.Offload: \"yes\" is not true or false" },
	{ "OffloadAfterPackets negative", "{'Vpcfw':{'Offload':true,'OffloadAfterPackets':-1}}", true,
	  "t.json: Vpcfw.OffloadAfterPackets: -1 is out of range (0 to 1000000000)" },
	{ "OffloadAfterPackets too many", "{'Vpcfw':{'OffloadAfterPackets':1000000001}}", true,
	  "t.json: Vpcfw.OffloadAfterPackets: 1000000001 is out of range (0 to 1000000000)" },
	{ "OffloadAfterPackets text", "{'Vpcfw':{'OffloadAfterPackets':'16'}}", true,
	  "t.json: Vpcfw.OffloadAfterPackets: \"16\" is not a number" },
	{ "OffloadAfterPackets fraction", "{'Vpcfw':{'OffloadAfterPackets':1.5}}", true,
	  "t.json: Vpcfw.OffloadAfterPackets: 1.5 is not a whole number" },
	{ "Queues 3-1", "{'Vpcfw':{'Queues':'3-1'}}", true,
	  "t.json: Vpcfw.Queues: \"3-1\" is not a queue list (e.g. \"0-3\" or \"0,2\")" },
	{ "Queues [70000]", "{'Vpcfw':{'Queues':[1,70000]}}", true,
	  "t.json: Vpcfw.Queues[1]: 70000 is not a queue number (0-65535)" },
	{ "Queues []", "{'Vpcfw':{'Queues':[]}}", true, "t.json: Vpcfw.Queues: no queue given" },
	{ "AdmitRelatedIcmp string", "{'Vpcfw':{'AdmitRelatedIcmp':'yes'}}", true,
	  "t.json: Vpcfw.AdmitRelatedIcmp: \"yes\" is not true or false" },
	{ "empty FlowLogDirectory", "{'Vpcfw':{'FlowLogDirectory':''}}", true,
	  "t.json: Vpcfw.FlowLogDirectory: \"\" is empty" },
	{ "device name too long",
	  "{'Vpcfw':{'InterfaceBindings':[{'NetworkInterfaceId':'eni-1','Device':'abcdefghijklmnop'}]}}", true,
	  "t.json: Vpcfw.InterfaceBindings[0].Device: \"abcdefghijklmnop\" is not a Linux device name" },
	{ "binding without device", "{'Vpcfw':{'InterfaceBindings':[{'NetworkInterfaceId':'eni-1'}]}}", true,
	  "t.json: Vpcfw.InterfaceBindings[0]: Device is missing" },

	/* config_check: the model as a whole */
	{ "duplicate group", "{'SecurityGroups':[{'GroupId':'sg-1'},{'GroupId':'sg-2','IpPermissions':[{'IpProtocol':'-1',"
	  "'UserIdGroupPairs':[{'GroupId':'sg-1'}]}]},{'GroupId':'sg-1'}]}", true,
	  "t.json: SecurityGroups[2].GroupId: sg-1 is defined twice (first at t.json: SecurityGroups[0])" },
	{ "duplicate subnet", "{'Subnets':[{'SubnetId':'s-1'},{'SubnetId':'s-1'}]}", true,
	  "t.json: Subnets[1].SubnetId: s-1 is defined twice (first at t.json: Subnets[0])" },
	{ "duplicate prefix list across shapes",
	  "{'ManagedPrefixLists':[{'PrefixListId':'pl-1'}],'PrefixLists':[{'PrefixListId':'pl-1','Cidrs':[]}]}", true,
	  "t.json: PrefixLists[0].PrefixListId: pl-1 is defined twice (first at t.json: ManagedPrefixLists[0])" },
	{ "duplicate rule number",
	  NACL(ENTRY("'CidrBlock':'0.0.0.0/0'") "," ENTRY("'CidrBlock':'10.0.0.0/8'")), true,
	  "t.json: NetworkAcls[0].Entries[1].RuleNumber: 100 is used twice in the inbound IPv4 rules of acl-1 (first at NetworkAcls[0].Entries[0])" },
	{ "two NACLs on a subnet",
	  "{'NetworkAcls':[{'NetworkAclId':'acl-1','Associations':[{'SubnetId':'s-1'}]},"
	  "{'NetworkAclId':'acl-2','Associations':[{'SubnetId':'s-2'},{'SubnetId':'s-1'}]}]}", true,
	  "t.json: NetworkAcls[1].Associations[1].SubnetId: s-1 is associated with two network ACLs, acl-2 and acl-1 (at t.json: NetworkAcls[0].Associations[0])" },
	{ "two default NACLs",
	  "{'NetworkAcls':[{'NetworkAclId':'acl-1','VpcId':'v','IsDefault':true},{'NetworkAclId':'acl-2','VpcId':'v','IsDefault':true}]}",
	  true, "t.json: NetworkAcls[1].IsDefault: v has two default network ACLs, acl-2 and acl-1 (at t.json: NetworkAcls[0])" },
	{ "interface bound twice",
	  "{'Vpcfw':{'InterfaceBindings':[{'NetworkInterfaceId':'eni-1','Device':'a'},{'NetworkInterfaceId':'eni-1','Device':'b'}]}}",
	  true, "t.json: Vpcfw.InterfaceBindings[1].NetworkInterfaceId: eni-1 is bound twice (first at t.json: Vpcfw.InterfaceBindings[0])" },
	{ "device bound twice",
	  "{'Vpcfw':{'InterfaceBindings':[{'NetworkInterfaceId':'eni-1','Device':'a'},{'NetworkInterfaceId':'eni-2','Device':'a'}]}}",
	  true, "t.json: Vpcfw.InterfaceBindings[1].Device: a already carries eni-1 (at t.json: Vpcfw.InterfaceBindings[0])" },

	/* traffic mirroring */
	{ "mirror rule action", "{'TrafficMirrorFilters':[{'TrafficMirrorFilterId':'tmf-1','IngressFilterRules':["
	  "{'RuleNumber':1,'RuleAction':'allow','SourceCidrBlock':'0.0.0.0/0','DestinationCidrBlock':'0.0.0.0/0'}]}]}",
	  true, "t.json: TrafficMirrorFilters[0].IngressFilterRules[0].RuleAction: \"allow\" is not accept or reject" },
	{ "mirror rule number", "{'TrafficMirrorFilters':[{'TrafficMirrorFilterId':'tmf-1','EgressFilterRules':["
	  "{'RuleNumber':32767,'RuleAction':'accept','SourceCidrBlock':'0.0.0.0/0','DestinationCidrBlock':'0.0.0.0/0'}]}]}",
	  true, "t.json: TrafficMirrorFilters[0].EgressFilterRules[0].RuleNumber: 32767 is not a rule number (1-32766)" },
	{ "mirror rule without CIDR", "{'TrafficMirrorFilters':[{'TrafficMirrorFilterId':'tmf-1','EgressFilterRules':["
	  "{'RuleNumber':1,'RuleAction':'accept','SourceCidrBlock':'0.0.0.0/0'}]}]}",
	  true, "t.json: TrafficMirrorFilters[0].EgressFilterRules[0]: DestinationCidrBlock is missing" },
	{ "mirror rule mixes families", "{'TrafficMirrorFilters':[{'TrafficMirrorFilterId':'tmf-1','EgressFilterRules':["
	  "{'RuleNumber':1,'RuleAction':'accept','SourceCidrBlock':'0.0.0.0/0','DestinationCidrBlock':'::/0'}]}]}",
	  true, "t.json: TrafficMirrorFilters[0].EgressFilterRules[0]: SourceCidrBlock and DestinationCidrBlock are of different families" },
	{ "mirror rule ports reversed", "{'TrafficMirrorFilters':[{'TrafficMirrorFilterId':'tmf-1','EgressFilterRules':["
	  "{'RuleNumber':1,'RuleAction':'accept','Protocol':6,'DestinationPortRange':{'FromPort':90,'ToPort':80},"
	  "'SourceCidrBlock':'0.0.0.0/0','DestinationCidrBlock':'0.0.0.0/0'}]}]}",
	  true, "t.json: TrafficMirrorFilters[0].EgressFilterRules[0].DestinationPortRange: FromPort 90 is greater than ToPort 80" },
	{ "mirror rule in the wrong list", "{'TrafficMirrorFilters':[{'TrafficMirrorFilterId':'tmf-1','EgressFilterRules':["
	  "{'RuleNumber':1,'RuleAction':'accept','TrafficDirection':'ingress',"
	  "'SourceCidrBlock':'0.0.0.0/0','DestinationCidrBlock':'0.0.0.0/0'}]}]}",
	  true, "t.json: TrafficMirrorFilters[0].EgressFilterRules[0].TrafficDirection: \"ingress\" is not egress, in EgressFilterRules" },
	{ "mirror protocol", "{'TrafficMirrorFilters':[{'TrafficMirrorFilterId':'tmf-1','EgressFilterRules':["
	  "{'RuleNumber':1,'RuleAction':'accept','Protocol':300,'SourceCidrBlock':'0.0.0.0/0','DestinationCidrBlock':'0.0.0.0/0'}]}]}",
	  true, "t.json: TrafficMirrorFilters[0].EgressFilterRules[0].Protocol: 300 is not a protocol (0-255)" },
	{ "mirror network service", "{'TrafficMirrorFilters':[{'TrafficMirrorFilterId':'tmf-1','NetworkServices':['ntp']}]}",
	  true, "t.json: TrafficMirrorFilters[0].NetworkServices[0]: \"ntp\" is not a network service (amazon-dns)" },
	{ "session VNI", "{'TrafficMirrorSessions':[{'NetworkInterfaceId':'eni-1','TrafficMirrorTargetId':'tmt-1',"
	  "'TrafficMirrorFilterId':'tmf-1','SessionNumber':1,'VirtualNetworkId':16777216}]}",
	  true, "t.json: TrafficMirrorSessions[0].VirtualNetworkId: 16777216 is not a VXLAN id (0-16777215)" },
	{ "session without VNI", "{'TrafficMirrorSessions':[{'NetworkInterfaceId':'eni-1','TrafficMirrorTargetId':'tmt-1',"
	  "'TrafficMirrorFilterId':'tmf-1','SessionNumber':1}]}",
	  true, "t.json: TrafficMirrorSessions[0]: VirtualNetworkId is missing" },
	{ "session number", "{'TrafficMirrorSessions':[{'NetworkInterfaceId':'eni-1','TrafficMirrorTargetId':'tmt-1',"
	  "'TrafficMirrorFilterId':'tmf-1','SessionNumber':0,'VirtualNetworkId':1}]}",
	  true, "t.json: TrafficMirrorSessions[0].SessionNumber: 0 is not a session number (1-32766)" },
	{ "session packet length", "{'TrafficMirrorSessions':[{'NetworkInterfaceId':'eni-1','TrafficMirrorTargetId':'tmt-1',"
	  "'TrafficMirrorFilterId':'tmf-1','SessionNumber':1,'VirtualNetworkId':1,'PacketLength':0}]}",
	  true, "t.json: TrafficMirrorSessions[0].PacketLength: 0 is out of range (1 to 65535)" },
	{ "target id twice", "{'TrafficMirrorTargets':[{'TrafficMirrorTargetId':'tmt-1'},{'TrafficMirrorTargetId':'tmt-1'}]}",
	  true, "t.json: TrafficMirrorTargets[1].TrafficMirrorTargetId: tmt-1 is defined twice (first at t.json: TrafficMirrorTargets[0])" },
	{ "pcap target without path", "{'Vpcfw':{'PcapTargets':[{'TrafficMirrorTargetId':'tmt-1'}]}}",
	  true, "t.json: Vpcfw.PcapTargets[0]: Path is missing" },
	{ "pcap target rotation", "{'Vpcfw':{'PcapTargets':[{'TrafficMirrorTargetId':'tmt-1','Path':'/x','RotateBytes':10}]}}",
	  true, "t.json: Vpcfw.PcapTargets[0].RotateBytes: 10 is out of range (65536 to 1099511627776)" },
	{ "pcap targets not a list", "{'Vpcfw':{'PcapTargets':{}}}",
	  true, "t.json: Vpcfw.PcapTargets: {} is not a list" },
	{ "mirror address", "{'Vpcfw':{'MirrorTargetAddresses':[{'TrafficMirrorTargetId':'tmt-1','Address':'10.0.0.300'}]}}",
	  true, "t.json: Vpcfw.MirrorTargetAddresses[0].Address: \"10.0.0.300\" is not an IPv4 or IPv6 address" },
	{ "drop capture not an object", "{'Vpcfw':{'DropCapture':'/tmp/d.pcap'}}",
	  true, "t.json: Vpcfw.DropCapture: \"/tmp/d.pcap\" is not an object" },
	{ "drop capture snap length", "{'Vpcfw':{'DropCapture':{'Path':'/tmp/d.pcap','SnapLength':70000}}}",
	  true, "t.json: Vpcfw.DropCapture.SnapLength: 70000 is out of range (1 to 65535)" },
	{ "drop capture empty path", "{'Vpcfw':{'DropCapture':{'Path':''}}}",
	  true, "t.json: Vpcfw.DropCapture.Path: \"\" is empty" },
	{ "sync without NodeId", "{'Vpcfw':{'Sync':{'Peer':'192.0.2.2','KeyFile':'/k'}}}",
	  true, "t.json: Vpcfw.Sync: NodeId is missing" },
	{ "sync without key", "{'Vpcfw':{'Sync':{'NodeId':1,'Peer':'192.0.2.2'}}}",
	  true, "t.json: Vpcfw.Sync: KeyFile is missing" },
	{ "sync bad peer", "{'Vpcfw':{'Sync':{'NodeId':1,'Peer':'192.0.2.300','KeyFile':'/k'}}}",
	  true, "t.json: Vpcfw.Sync.Peer: \"192.0.2.300\" is not an IPv4 or IPv6 address" },
	{ "sync listen of another family", "{'Vpcfw':{'Sync':{'NodeId':1,'Peer':'192.0.2.2','Listen':'2001:db8::1','KeyFile':'/k'}}}",
	  true, "t.json: Vpcfw.Sync.Listen: \"2001:db8::1\" is not of the Peer's address family" },
	{ "sync NodeId 0", "{'Vpcfw':{'Sync':{'NodeId':0,'Peer':'192.0.2.2','KeyFile':'/k'}}}",
	  true, "t.json: Vpcfw.Sync.NodeId: 0 is out of range (1 to 4294967295)" },
	{ "sync port", "{'Vpcfw':{'Sync':{'NodeId':1,'Peer':'192.0.2.2','KeyFile':'/k','Port':0}}}",
	  true, "t.json: Vpcfw.Sync.Port: 0 is not a port (1-65535)" },
	{ "sync message size", "{'Vpcfw':{'Sync':{'NodeId':1,'Peer':'192.0.2.2','KeyFile':'/k','MessageBytes':100}}}",
	  true, "t.json: Vpcfw.Sync.MessageBytes: 100 is out of range (433 to 65507)" },
	{ "sync not an object", "{'Vpcfw':{'Sync':true}}",
	  true, "t.json: Vpcfw.Sync: true is not an object" },
	{ "sync unknown key", "{'Vpcfw':{'Sync':{'NodeId':1,'Peer':'192.0.2.2','KeyFile':'/k','Peers':[]}}}",
	  false, "t.json: Vpcfw.Sync.Peers: unknown key, ignored" },

	{ "IPv6 block in Ipv4Prefixes", "{'NetworkInterfaces':[{'NetworkInterfaceId':'eni-1',"
	  "'Ipv4Prefixes':[{'Ipv4Prefix':'2001:db8::/80'}]}]}",
	  true, "t.json: NetworkInterfaces[0].Ipv4Prefixes[0].Ipv4Prefix: \"2001:db8::/80\" is not an IPv4 CIDR block" },
	{ "bad Ipv6Prefix", "{'NetworkInterfaces':[{'NetworkInterfaceId':'eni-1',"
	  "'Ipv6Prefixes':[{'Ipv6Prefix':'2001:db8::/129'}]}]}",
	  true, "t.json: NetworkInterfaces[0].Ipv6Prefixes[0].Ipv6Prefix: \"2001:db8::/129\" is not an IPv6 CIDR block" },
	{ "prefix entry without its key", "{'NetworkInterfaces':[{'NetworkInterfaceId':'eni-1',"
	  "'Ipv4Prefixes':[{}]}]}",
	  true, "t.json: NetworkInterfaces[0].Ipv4Prefixes[0]: Ipv4Prefix is missing" },

	/* warnings */
	{ "unknown interface type", "{'NetworkInterfaces':[{'NetworkInterfaceId':'eni-1','InterfaceType':'hovercraft'}]}",
	  false, "t.json: NetworkInterfaces[0].InterfaceType: \"hovercraft\" is not an interface type the EC2 API documents; "
	  "the interface is filtered by its groups as any other" },
	{ "unknown top-level key", "{'RouteTables':[]}", false, "t.json: RouteTables: unknown top-level key, ignored" },
	{ "unknown Vpcfw key", "{'Vpcfw':{'Queus':[1]}}", false, "t.json: Vpcfw.Queus: unknown key, ignored" },
	{ "tcp -1/50 (Batfish SecurityGroupTest)", SG("{'IpProtocol':'tcp','FromPort':-1,'ToPort':50}"), false,
	  "t.json: SecurityGroups[0].IpPermissions[0]: FromPort -1 with ToPort 50: read as ports 0-50" },
	{ "tcp 30/-1", SG("{'IpProtocol':'tcp','FromPort':30,'ToPort':-1}"), false,
	  "t.json: SecurityGroups[0].IpPermissions[0]: ToPort -1 with FromPort 30: read as ports 30-65535" },
	{ "icmp -1/9", SG("{'IpProtocol':'icmp','FromPort':-1,'ToPort':9,'IpRanges':[{'CidrIp':'0.0.0.0/0'}]}"), false,
	  "t.json: SecurityGroups[0].IpPermissions[0]: ICMP code 9 with type -1 (all types): the rule matches nothing" },
	{ "pair with GroupName only", SG("{'IpProtocol':'-1','UserIdGroupPairs':[{'GroupName':'web'}]}"), false,
	  "t.json: SecurityGroups[0].IpPermissions[0].UserIdGroupPairs[0]: group web is named without a GroupId (EC2-Classic): it matches nothing" },
};

START_TEST(test_bad)
{
	const struct bad *b = &bads[_i];
	load("t.json", b->json);
	config_check(&m, &d);
	if (!has(b->error, b->msg))
		ck_abort_msg("case \"%s\"", b->name);
	/* A warning case must not also be an error. */
	if (!b->error && d.errors) {
		dump();
		ck_abort_msg("case \"%s\" has errors", b->name);
	}
}
END_TEST

/* Every error is reported, not just the first (SPEC §1). */
START_TEST(test_all_errors_reported)
{
	size_t n = load("t.json",
		 "{'Subnets':[{'SubnetId':'s-1','CidrBlock':'10.0.1.0/33'},"
		 "{'SubnetId':'s-2','CidrBlock':'10.0.2.0/24','VpcId':7}],"
		 "'SecurityGroups':[{'GroupId':'sg-1','IpPermissions':["
		 "{'IpProtocol':'tcp','FromPort':1,'ToPort':70000}]}]}");
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(d.errors, 3);
	ck_assert(has(true, "t.json: Subnets[1].VpcId: 7 is not a string"));
}
END_TEST

/* ------------------------------------------------------------ good input */

START_TEST(test_defaults)
{
	ck_assert_int_eq(m.vpcfw.n_queues, 1);
	ck_assert_uint_eq(m.vpcfw.queues[0], 0);
	ck_assert_uint_eq(m.vpcfw.conntrack_max, 262144);
	ck_assert(!m.vpcfw.admit_related_icmp);
	ck_assert(!m.vpcfw.fail_open);
	ck_assert_str_eq(m.vpcfw.control_socket, "/run/vpcfw/vpcfwd.sock");
	ck_assert_ptr_null(m.vpcfw.flow_log_dir);
	ck_assert_ptr_null(m.vpcfw.region);
	ck_assert_int_eq(m.vpcfw.n_bindings, 0);
	/* flood fairness is beyond AWS: off unless asked for */
	ck_assert_uint_eq(m.vpcfw.per_source_rate, 0);
	ck_assert_uint_eq(m.vpcfw.per_source_burst, 0);
	ck_assert_uint_eq(m.vpcfw.per_source_share, 0);
	ck_assert_uint_eq(m.vpcfw.per_source_v6_prefix, 128);
	/* the offload is on (issue #16: proven by the throughput bench); its bit */
	ck_assert(m.vpcfw.offload);
	ck_assert(!m.vpcfw.offload_explicit);   /* the default, not written */
	ck_assert_uint_eq(m.vpcfw.offload_mark, 0x40000000);
	/* short flows (a connect, a byte each way, a close) never offered */
	ck_assert_uint_eq(m.vpcfw.offload_after, 8);
}
END_TEST

START_TEST(test_vpcfw_offload)
{
	ck_assert_uint_eq(load("t.json", "{'Vpcfw':{'Offload':true,'OffloadMark':2147483648}}"), 0);
	assert_clean();
	ck_assert(m.vpcfw.offload);
	ck_assert_uint_eq(m.vpcfw.offload_mark, 0x80000000u);
	ck_assert_uint_eq(load("t.json", "{'Vpcfw':{'Offload':true,'OffloadAfterPackets':0}}"), 0);
	assert_clean();
	ck_assert_uint_eq(m.vpcfw.offload_after, 0);
	ck_assert_uint_eq(load("t.json", "{'Vpcfw':{'Offload':true,'OffloadAfterPackets':1000000000}}"), 0);
	assert_clean();
	ck_assert_uint_eq(m.vpcfw.offload_after, 1000000000u);
	/* written either way: start checks speak of it (startcheck.c) */
	ck_assert(m.vpcfw.offload_explicit);
	ck_assert_uint_eq(load("t.json", "{'Vpcfw':{'Offload':false}}"), 0);
	assert_clean();
	ck_assert(!m.vpcfw.offload);
	ck_assert(m.vpcfw.offload_explicit);
	/* a later file that does not write it changes neither */
	ck_assert_uint_eq(load("u.json", "{'Vpcfw':{'OffloadAfterPackets':4}}"), 0);
	assert_clean();
	ck_assert(!m.vpcfw.offload);
	ck_assert(m.vpcfw.offload_explicit);
}
END_TEST

START_TEST(test_vpcfw_per_source)
{
	ck_assert_uint_eq(load("t.json", "{'Vpcfw':{'PerSourceNewFlowsPerSecond':200,"
				"'PerSourceNewFlowBurst':1000,'PerSourceConntrackPercent':25,"
				"'PerSourceIpv6PrefixLength':64}}"), 0);
	assert_clean();
	ck_assert_uint_eq(m.vpcfw.per_source_rate, 200);
	ck_assert_uint_eq(m.vpcfw.per_source_burst, 1000);
	ck_assert_uint_eq(m.vpcfw.per_source_share, 25);
	ck_assert_uint_eq(m.vpcfw.per_source_v6_prefix, 64);
}
END_TEST

START_TEST(test_vpcfw_table)
{
	ck_assert_uint_eq(load("t.json", "{'Vpcfw':{'Queues':'0-3,8','ConntrackMax':1000,"
				"'AdmitRelatedIcmp':true,'FailOpen':true,'FlowLogDirectory':'/var/log/fl',"
				"'ControlSocket':'/tmp/s','Region':'eu-west-1','AccountId':'123456789012',"
				"'DecisionLog':'/tmp/d.jsonl','InterfaceBindings':["
				"{'NetworkInterfaceId':'eni-1','Device':'veth0'}]}}"), 0);
	assert_clean();
	static const uint16_t q[] = { 0, 1, 2, 3, 8 };
	ck_assert_int_eq(m.vpcfw.n_queues, 5);
	for (int i = 0; i < 5; i++)
		ck_assert_uint_eq(m.vpcfw.queues[i], q[i]);
	ck_assert_uint_eq(m.vpcfw.conntrack_max, 1000);
	ck_assert(m.vpcfw.admit_related_icmp);
	ck_assert(m.vpcfw.fail_open);
	ck_assert_str_eq(m.vpcfw.flow_log_dir, "/var/log/fl");
	ck_assert_str_eq(m.vpcfw.control_socket, "/tmp/s");
	ck_assert_str_eq(m.vpcfw.region, "eu-west-1");
	ck_assert_str_eq(m.vpcfw.account_id, "123456789012");
	ck_assert_str_eq(m.vpcfw.decision_log, "/tmp/d.jsonl");
	ck_assert_int_eq(m.vpcfw.n_bindings, 1);
	ck_assert_str_eq(m.vpcfw.bindings[0].eni_id, "eni-1");
	ck_assert_str_eq(m.vpcfw.bindings[0].device, "veth0");
	ck_assert_str_eq(m.vpcfw.bindings[0].where.path, "Vpcfw.InterfaceBindings[0]");

	/* A list form, unsorted and repeated; a later file overrides scalars
	 * and adds bindings. */
	ck_assert_uint_eq(load("u.json", "{'Vpcfw':{'Queues':[5,2,5],'ConntrackMax':67108864,"
				"'InterfaceBindings':[{'NetworkInterfaceId':'eni-2','Device':'veth1'}]}}"), 0);
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.vpcfw.n_queues, 2);
	ck_assert_uint_eq(m.vpcfw.queues[0], 2);
	ck_assert_uint_eq(m.vpcfw.queues[1], 5);
	ck_assert_uint_eq(m.vpcfw.conntrack_max, 67108864);
	ck_assert_int_eq(m.vpcfw.n_bindings, 2);
	ck_assert_str_eq(m.vpcfw.bindings[1].where.file, "u.json");
}
END_TEST

START_TEST(test_vpc_cidrs)
{
	load("t.json", "{'Vpcs':[{'VpcId':'vpc-1','OwnerId':'123','CidrBlock':'10.0.0.0/16',"
		       "'CidrBlockAssociationSet':["
		       "{'CidrBlock':'10.0.0.0/16','CidrBlockState':{'State':'associated'}},"
		       "{'CidrBlock':'10.1.0.0/16','CidrBlockState':{'State':'associated'}},"
		       "{'CidrBlock':'10.2.0.0/16','CidrBlockState':{'State':'disassociated'}},"
		       "{'CidrBlock':'10.3.0.0/16','CidrBlockState':{'State':'failed'}}],"
		       "'Ipv6CidrBlockAssociationSet':[{'Ipv6CidrBlock':'2001:db8:1234::/56',"
		       "'Ipv6CidrBlockState':{'State':'associated'}}]},"
		       "{'VpcId':'vpc-2','Ipv6CidrBlockAssociationSet':[{'Ipv6CidrBlock':'2001:db8::1/56'}]}]}");
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.n_vpcs, 2);
	const struct m_vpc *v = &m.vpcs[0];
	char b[CIDR_STRLEN];
	ck_assert_str_eq(v->id, "vpc-1");
	ck_assert_str_eq(v->owner_id, "123");
	ck_assert(v->has_primary4);
	ck_assert_int_eq(v->n_cidrs, 3);
	ck_assert_str_eq(cidr_format(&v->cidrs[0], b), "10.0.0.0/16");
	ck_assert_str_eq(cidr_format(&v->cidrs[1], b), "10.1.0.0/16");
	ck_assert_str_eq(cidr_format(&v->cidrs[2], b), "2001:db8:1234::/56");
	ck_assert_str_eq(v->where.file, "t.json");
	ck_assert_str_eq(v->where.path, "Vpcs[0]");
	ck_assert(!m.vpcs[1].has_primary4);
	ck_assert_int_eq(m.vpcs[1].n_cidrs, 1);
	ck_assert_str_eq(cidr_format(&m.vpcs[1].cidrs[0], b), "2001:db8::/56"); /* canonical */
}
END_TEST

/* SPEC §3: a CIDR with host bits set is canonicalised, silently. */
START_TEST(test_subnet)
{
	load("t.json", "{'Subnets':[{'SubnetId':'subnet-1','VpcId':'vpc-1','CidrBlock':'10.0.1.7/24',"
		       "'AvailabilityZone':'us-east-1a','AvailabilityZoneId':'use1-az1','OwnerId':'1',"
		       "'Ipv6CidrBlockAssociationSet':[{'Ipv6CidrBlock':'2001:db8:1:1::/64',"
		       "'Ipv6CidrBlockState':{'State':'associated'}}],'Tags':[{'Key':'a','Value':'b'}]},"
		       "{'SubnetId':'subnet-6','Ipv6CidrBlockAssociationSet':[{'Ipv6CidrBlock':'2001:db8:1:2::/64'}]}]}");
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.n_subnets, 2);
	const struct m_subnet *s = &m.subnets[0];
	char b[CIDR_STRLEN];
	ck_assert(s->has4);
	ck_assert_str_eq(cidr_format(&s->cidr4, b), "10.0.1.0/24");
	ck_assert_str_eq(s->vpc_id, "vpc-1");
	ck_assert_str_eq(s->az, "us-east-1a");
	ck_assert_str_eq(s->az_id, "use1-az1");
	ck_assert_str_eq(s->owner_id, "1");
	ck_assert_int_eq(s->n_cidr6, 1);
	ck_assert_str_eq(cidr_format(&s->cidr6[0], b), "2001:db8:1:1::/64");
	ck_assert(!m.subnets[1].has4); /* IPv6-only subnet */
	ck_assert_ptr_null(m.subnets[1].vpc_id);
}
END_TEST

START_TEST(test_nacl)
{
	load("t.json", "{'NetworkAcls':[{'NetworkAclId':'acl-1','VpcId':'vpc-1','IsDefault':true,'Entries':["
		       "{'RuleNumber':100,'Egress':false,'RuleAction':'allow','Protocol':'6','CidrBlock':'10.0.0.9/8',"
		       "'PortRange':{'From':22,'To':23}},"
		       "{'RuleNumber':110,'Egress':true,'RuleAction':'DENY','Protocol':'icmp','CidrBlock':'0.0.0.0/0',"
		       "'IcmpTypeCode':{'Type':8,'Code':-1}},"
		       "{'RuleNumber':120,'Egress':true,'RuleAction':'allow','Protocol':17,'Ipv6CidrBlock':'::/0'},"
		       "{'RuleNumber':32767,'Egress':false,'RuleAction':'deny','Protocol':'-1','CidrBlock':'0.0.0.0/0'},"
		       "{'RuleNumber':32768,'Egress':false,'RuleAction':'deny','Protocol':'all','Ipv6CidrBlock':'::/0'},"
		       "{'RuleNumber':100,'Egress':true,'RuleAction':'allow','Protocol':'-1','CidrBlock':'0.0.0.0/0'},"
		       "{'RuleNumber':100,'Egress':false,'RuleAction':'allow','Protocol':'58','Ipv6CidrBlock':'::/0'}],"
		       "'Associations':[{'NetworkAclAssociationId':'aclassoc-1','SubnetId':'subnet-1'},"
		       "{'SubnetId':'subnet-2'}]}]}");
	config_check(&m, &d);
	assert_clean(); /* 100 in/out and IPv4/IPv6 are four different rules */
	ck_assert_int_eq(m.n_nacls, 1);
	const struct m_nacl *n = &m.nacls[0];
	char b[CIDR_STRLEN];
	ck_assert(n->is_default);
	ck_assert_str_eq(n->vpc_id, "vpc-1");
	ck_assert_int_eq(n->n_entries, 7);
	const struct m_nacl_entry *e = n->entries;
	ck_assert_uint_eq(e[0].number, 100);
	ck_assert(!e[0].egress && e[0].allow);
	ck_assert_int_eq(e[0].proto, PROTO_TCP);
	ck_assert(e[0].has_ports && !e[0].has_icmp);
	ck_assert_uint_eq(e[0].port_from, 22);
	ck_assert_uint_eq(e[0].port_to, 23);
	ck_assert_str_eq(cidr_format(&e[0].cidr, b), "10.0.0.0/8");
	ck_assert_str_eq(e[0].where.path, "NetworkAcls[0].Entries[0]");
	ck_assert(e[1].egress && !e[1].allow);
	ck_assert_int_eq(e[1].proto, PROTO_ICMP);
	ck_assert(e[1].has_icmp && !e[1].has_ports);
	ck_assert_int_eq(e[1].icmp_type, 8);
	ck_assert_int_eq(e[1].icmp_code, -1);
	ck_assert_int_eq(e[2].proto, PROTO_UDP);
	ck_assert_int_eq(e[2].cidr.family, FAMILY_V6);
	ck_assert_uint_eq(e[3].number, 32767);
	ck_assert_int_eq(e[3].proto, RULE_PROTO_ALL);
	ck_assert_uint_eq(e[4].number, 32768);
	ck_assert_int_eq(e[4].proto, RULE_PROTO_ALL);
	ck_assert_int_eq(e[6].proto, PROTO_ICMPV6);
	ck_assert_int_eq(n->n_subnets, 2);
	ck_assert_str_eq(n->subnets[1], "subnet-2");
	ck_assert_str_eq(n->subnet_where[1].path, "NetworkAcls[0].Associations[1]");
}
END_TEST

/* More than 40 rules in a direction and family: AWS's quota, a warning. */
START_TEST(test_nacl_quota_warning)
{
	char *text = malloc(64 * 1024);
	size_t len = (size_t)sprintf(text, "{'NetworkAcls':[{'NetworkAclId':'acl-1','Entries':[");
	for (int i = 1; i <= 41; i++)
		len += (size_t)sprintf(text + len, "%s{'RuleNumber':%d,'Egress':true,'RuleAction':'allow',"
					"'Protocol':'-1','CidrBlock':'0.0.0.0/0'}", i > 1 ? "," : "", i);
	len += (size_t)sprintf(text + len, ",{'RuleNumber':32767,'Egress':true,'RuleAction':'deny',"
				"'Protocol':'-1','CidrBlock':'0.0.0.0/0'}]}]}");
	load("t.json", text);
	free(text);
	config_check(&m, &d);
	ck_assert_uint_eq(d.errors, 0);
	ck_assert_uint_eq(d.warnings, 1);
	ck_assert(has(false, "t.json: NetworkAcls[0]: acl-1 has 41 outbound IPv4 rules; AWS allows at most 40"));
}
END_TEST

static const struct proto_case {
	const char *text;
	int proto;
} protos[] = {
	{ "'tcp'", PROTO_TCP }, { "'TCP'", PROTO_TCP }, { "'6'", PROTO_TCP }, { "6", PROTO_TCP },
	{ "'udp'", PROTO_UDP }, { "'17'", PROTO_UDP }, { "'icmp'", PROTO_ICMP }, { "'1'", PROTO_ICMP },
	{ "'icmpv6'", PROTO_ICMPV6 }, { "'ICMPv6'", PROTO_ICMPV6 }, { "'58'", PROTO_ICMPV6 },
	{ "'-1'", RULE_PROTO_ALL }, { "-1", RULE_PROTO_ALL }, { "'all'", RULE_PROTO_ALL }, { "'47'", 47 },
	{ "'0'", 0 }, { "'255'", 255 },
};

START_TEST(test_protocols)
{
	const struct proto_case *p = &protos[_i];
	char sg[256], nacl[256];
	snprintf(sg, sizeof(sg), "{'SecurityGroups':[{'GroupId':'sg-1','IpPermissions':[{'IpProtocol':%s}]}]}",
		 p->text);
	snprintf(nacl, sizeof(nacl), NACL("{'RuleNumber':1,'Egress':false,'RuleAction':'allow','Protocol':%s,"
					  "'CidrBlock':'0.0.0.0/0'}"), p->text);
	load("t.json", sg);
	load("t.json", nacl);
	assert_clean();
	ck_assert_int_eq(m.sgs[0].in[0].proto, p->proto);
	ck_assert_int_eq(m.nacls[0].entries[0].proto, p->proto);
}
END_TEST

START_TEST(test_sg)
{
	load("t.json", "{'SecurityGroups':[{'GroupId':'sg-1','GroupName':'web','VpcId':'vpc-1',"
		       "'IpPermissions':["
		       "{'IpProtocol':'tcp','FromPort':443,'ToPort':443,"
		       "'IpRanges':[{'CidrIp':'0.0.0.7/0','Description':'any'}],'Ipv6Ranges':[{'CidrIpv6':'::/0'}],"
		       "'PrefixListIds':[{'PrefixListId':'pl-1'}],"
		       "'UserIdGroupPairs':[{'GroupId':'sg-2','UserId':'1'}]},"
		       "{'IpProtocol':'udp'},"
		       "{'IpProtocol':'icmp','FromPort':8,'ToPort':-1,'IpRanges':[{'CidrIp':'10.0.0.0/8'}]},"
		       "{'IpProtocol':'50','FromPort':1,'ToPort':2,'IpRanges':[{'CidrIp':'10.0.0.0/8'}]},"
		       "{'IpProtocol':'tcp','FromPort':-1,'ToPort':-1,'IpRanges':[{'CidrIp':'10.0.0.0/8'}]}],"
		       "'IpPermissionsEgress':[{'IpProtocol':'-1','IpRanges':[{'CidrIp':'0.0.0.0/0'}]}]}]}");
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.n_sgs, 1);
	const struct m_sg *g = &m.sgs[0];
	char b[CIDR_STRLEN];
	ck_assert_str_eq(g->name, "web");
	ck_assert_str_eq(g->vpc_id, "vpc-1");
	ck_assert_int_eq(g->n_in, 5);
	ck_assert_int_eq(g->n_out, 1);
	const struct m_sg_rule *r = &g->in[0];
	ck_assert_int_eq(r->proto, PROTO_TCP);
	ck_assert_int_eq(r->from, 443);
	ck_assert_int_eq(r->to, 443);
	ck_assert_int_eq(r->n_peers, 4);
	ck_assert_int_eq(r->peers[0].kind, PEER_CIDR);
	ck_assert_str_eq(cidr_format(&r->peers[0].cidr, b), "0.0.0.0/0");
	ck_assert_str_eq(r->peers[0].where.path, "SecurityGroups[0].IpPermissions[0].IpRanges[0]");
	ck_assert_int_eq(r->peers[1].kind, PEER_CIDR);
	ck_assert_int_eq(r->peers[1].cidr.family, FAMILY_V6);
	ck_assert_int_eq(r->peers[2].kind, PEER_PREFIX_LIST);
	ck_assert_str_eq(r->peers[2].ref, "pl-1");
	ck_assert_int_eq(r->peers[3].kind, PEER_GROUP);
	ck_assert_str_eq(r->peers[3].ref, "sg-2");
	/* ports absent: all */
	ck_assert_int_eq(g->in[1].from, -1);
	ck_assert_int_eq(g->in[1].to, -1);
	ck_assert_int_eq(g->in[1].n_peers, 0);
	/* icmp: type 8, any code */
	ck_assert_int_eq(g->in[2].proto, PROTO_ICMP);
	ck_assert_int_eq(g->in[2].from, 8);
	ck_assert_int_eq(g->in[2].to, -1);
	/* other protocols: ports ignored */
	ck_assert_int_eq(g->in[3].proto, 50);
	ck_assert_int_eq(g->in[3].from, -1);
	ck_assert_int_eq(g->in[4].from, -1);
	ck_assert_int_eq(g->in[4].to, -1);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(g->in[i].index, i);
	ck_assert_str_eq(g->in[3].where.path, "SecurityGroups[0].IpPermissions[3]");
	ck_assert_int_eq(g->out[0].proto, RULE_PROTO_ALL);
	ck_assert_str_eq(g->out[0].where.path, "SecurityGroups[0].IpPermissionsEgress[0]");
}
END_TEST

/* Batfish SecurityGroupTest edge cases: loaded with a warning each. */
START_TEST(test_sg_batfish_edges)
{
	load("t.json", SG("{'IpProtocol':'tcp','FromPort':-1,'ToPort':50,'IpRanges':[{'CidrIp':'1.0.0.0/8'}]},"
			  "{'IpProtocol':'icmp','FromPort':-1,'ToPort':9,'IpRanges':[{'CidrIp':'0.0.0.0/0'}],"
			  "'Ipv6Ranges':[{'CidrIpv6':'::/0'}]},"
			  "{'IpProtocol':'-1','UserIdGroupPairs':[{'GroupName':'default'},{'GroupId':'sg-3'}]}"));
	ck_assert_uint_eq(d.errors, 0);
	ck_assert_uint_eq(d.warnings, 3);
	const struct m_sg *g = &m.sgs[0];
	ck_assert_int_eq(g->in[0].from, 0);
	ck_assert_int_eq(g->in[0].to, 50);
	ck_assert_int_eq(g->in[0].n_peers, 1);
	ck_assert_int_eq(g->in[1].n_peers, 0); /* matches nothing */
	ck_assert_int_eq(g->in[2].n_peers, 1);
	ck_assert_str_eq(g->in[2].peers[0].ref, "sg-3");
}
END_TEST

START_TEST(test_eni)
{
	load("t.json", "{'NetworkInterfaces':[{'NetworkInterfaceId':'eni-1','SubnetId':'subnet-1','VpcId':'vpc-1',"
		       "'OwnerId':'1','Attachment':{'InstanceId':'i-1','DeviceIndex':0},"
		       "'PrivateIpAddress':'10.0.1.10',"
		       "'PrivateIpAddresses':[{'PrivateIpAddress':'10.0.1.11','Primary':false},"
		       "{'PrivateIpAddress':'10.0.1.10','Primary':true},{'PrivateIpAddress':'10.0.1.11'}],"
		       "'Ipv6Addresses':[{'Ipv6Address':'2001:db8::10'}],"
		       "'Groups':[{'GroupId':'sg-1','GroupName':'a'},{'GroupId':'sg-2'}],"
		       "'SourceDestCheck':false,"
		       "'ConnectionTrackingConfiguration':{'TcpEstablishedTimeout':60,'UdpStreamTimeout':180,'UdpTimeout':30}},"
		       /* primary only in the list, listed second */
		       "{'NetworkInterfaceId':'eni-2','PrivateIpAddresses':[{'PrivateIpAddress':'10.0.2.5','Primary':false},"
		       "{'PrivateIpAddress':'10.0.2.4','Primary':true}]},"
		       /* two claims to be primary: PrivateIpAddress wins, one primary only */
		       "{'NetworkInterfaceId':'eni-3','PrivateIpAddress':'10.0.3.1',"
		       "'PrivateIpAddresses':[{'PrivateIpAddress':'10.0.3.2','Primary':true}]}]}");
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.n_enis, 3);
	const struct m_eni *e = &m.enis[0];
	char b[ADDR_STRLEN];
	ck_assert_str_eq(e->subnet_id, "subnet-1");
	ck_assert_str_eq(e->vpc_id, "vpc-1");
	ck_assert_str_eq(e->owner_id, "1");
	ck_assert_str_eq(e->instance_id, "i-1");
	ck_assert_int_eq(e->n_addrs, 3);
	ck_assert_str_eq(addr_format(&e->addrs[0].addr, FAMILY_V4, b), "10.0.1.10");
	ck_assert(e->addrs[0].primary);
	ck_assert_str_eq(addr_format(&e->addrs[1].addr, FAMILY_V4, b), "10.0.1.11");
	ck_assert(!e->addrs[1].primary);
	ck_assert_int_eq(e->addrs[2].family, FAMILY_V6);
	ck_assert_str_eq(addr_format(&e->addrs[2].addr, FAMILY_V6, b), "2001:db8::10");
	ck_assert_int_eq(e->n_groups, 2);
	ck_assert_str_eq(e->groups[1], "sg-2");
	ck_assert_str_eq(e->group_where[1].path, "NetworkInterfaces[0].Groups[1]");
	ck_assert(!e->source_dest_check);
	ck_assert_uint_eq(e->timeouts.tcp_established, 60);
	ck_assert_uint_eq(e->timeouts.udp_stream, 180);
	ck_assert_uint_eq(e->timeouts.udp, 30);

	ck_assert_ptr_null(e->type);
	ck_assert_int_eq(e->n_prefixes, 0);

	e = &m.enis[1];
	ck_assert(e->source_dest_check); /* default */
	ck_assert_uint_eq(e->timeouts.tcp_established, 0);
	ck_assert_int_eq(e->n_addrs, 2);
	ck_assert_str_eq(addr_format(&e->addrs[0].addr, FAMILY_V4, b), "10.0.2.4");
	ck_assert(e->addrs[0].primary);
	ck_assert(!e->addrs[1].primary);

	e = &m.enis[2];
	ck_assert_int_eq(e->n_addrs, 2);
	ck_assert_str_eq(addr_format(&e->addrs[0].addr, FAMILY_V4, b), "10.0.3.1");
	ck_assert(e->addrs[0].primary);
	ck_assert(!e->addrs[1].primary);
}
END_TEST

/* Issue #10: InterfaceType and delegated prefixes, as describe-network-interfaces prints them. */
START_TEST(test_eni_type_and_prefixes)
{
	load("t.json", "{'NetworkInterfaces':[{'NetworkInterfaceId':'eni-1','InterfaceType':'nat_gateway',"
		       "'Groups':[],'PrivateIpAddress':'10.0.1.10'},"
		       "{'NetworkInterfaceId':'eni-2','InterfaceType':'interface','PrivateIpAddress':'10.0.2.10',"
		       "'Ipv4Prefixes':[{'Ipv4Prefix':'10.0.2.16/28'},{'Ipv4Prefix':'10.0.2.32/28'}],"
		       "'Ipv6Prefixes':[{'Ipv6Prefix':'2001:db8:0:2:1::/80'}]}]}");
	config_check(&m, &d);
	assert_clean();
	char b[CIDR_STRLEN];
	ck_assert_str_eq(m.enis[0].type, "nat_gateway");
	ck_assert_int_eq(m.enis[0].n_groups, 0);
	const struct m_eni *e = &m.enis[1];
	ck_assert_str_eq(e->type, "interface");
	ck_assert_int_eq(e->n_prefixes, 3);
	ck_assert_str_eq(cidr_format(&e->prefixes[1], b), "10.0.2.32/28");
	ck_assert_str_eq(cidr_format(&e->prefixes[2], b), "2001:db8:0:2:1::/80");
	ck_assert_str_eq(e->prefix_where[1].path, "NetworkInterfaces[1].Ipv4Prefixes[1].Ipv4Prefix");
	ck_assert_str_eq(e->prefix_where[2].path, "NetworkInterfaces[1].Ipv6Prefixes[0].Ipv6Prefix");
}
END_TEST

START_TEST(test_flowlogs_and_prefix_lists)
{
	load("t.json", "{'FlowLogs':[{'FlowLogId':'fl-1','ResourceId':'vpc-1','TrafficType':'ALL'},"
		       "{'FlowLogId':'fl-2','ResourceId':'eni-1','TrafficType':'REJECT','MaxAggregationInterval':60,"
		       "'LogFormat':'${version} ${srcaddr}','LogDestinationType':'cloud-watch-logs',"
		       "'LogGroupName':'g','LogDestination':'arn:x'}],"
		       "'ManagedPrefixLists':[{'PrefixListId':'pl-1','Entries':[{'Cidr':'10.0.0.0/16','Description':'a'},"
		       "{'Cidr':'2001:db8::/32'}]}],"
		       /* describe-prefix-lists, and describe-managed-prefix-lists metadata (no Cidrs) */
		       "'PrefixLists':[{'PrefixListId':'pl-meta','PrefixListName':'x','MaxEntries':5},"
		       "{'PrefixListId':'pl-s3','PrefixListName':'com.amazonaws.us-east-1.s3','Cidrs':['52.216.0.0/15']}]}");
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.n_flowlogs, 2);
	ck_assert_uint_eq(m.flowlogs[0].max_aggregation_interval, 600);
	ck_assert_str_eq(m.flowlogs[0].destination_type, "s3");
	ck_assert_ptr_null(m.flowlogs[0].log_format);
	ck_assert_str_eq(m.flowlogs[0].traffic_type, "ALL");
	ck_assert_str_eq(m.flowlogs[1].resource_id, "eni-1");
	ck_assert_uint_eq(m.flowlogs[1].max_aggregation_interval, 60);
	ck_assert_str_eq(m.flowlogs[1].log_format, "${version} ${srcaddr}");
	ck_assert_str_eq(m.flowlogs[1].destination_type, "cloud-watch-logs");
	ck_assert_str_eq(m.flowlogs[1].log_group_name, "g");
	ck_assert_str_eq(m.flowlogs[1].destination, "arn:x");
	ck_assert_int_eq(m.n_pls, 2);
	ck_assert_str_eq(m.pls[0].id, "pl-1");
	ck_assert_int_eq(m.pls[0].n_cidrs, 2);
	ck_assert_str_eq(m.pls[1].id, "pl-s3");
	ck_assert_int_eq(m.pls[1].n_cidrs, 1);
	ck_assert_str_eq(m.pls[1].where.path, "PrefixLists[1]");
}
END_TEST

/* describe-traffic-mirror-* as the CLI prints them, and the Vpcfw keys
 *. */
START_TEST(test_traffic_mirroring)
{
	load("t.json", "{'TrafficMirrorFilters':[{'TrafficMirrorFilterId':'tmf-1','Description':'x',"
		       "'IngressFilterRules':[{'TrafficMirrorFilterRuleId':'tmfr-1','TrafficMirrorFilterId':'tmf-1',"
		       "'TrafficDirection':'ingress','RuleNumber':100,'RuleAction':'accept','Protocol':6,"
		       "'DestinationPortRange':{'FromPort':22,'ToPort':22},'SourcePortRange':{'FromPort':1024,'ToPort':65535},"
		       "'DestinationCidrBlock':'10.0.0.0/24','SourceCidrBlock':'10.0.1.0/24','Description':'TCP Rule'}],"
		       "'EgressFilterRules':[{'RuleNumber':1,'RuleAction':'reject',"
		       "'DestinationCidrBlock':'::/0','SourceCidrBlock':'2001:db8::/32'}],"
		       "'NetworkServices':[],'Tags':[]}],"
		       "'TrafficMirrorTargets':[{'TrafficMirrorTargetId':'tmt-1','NetworkInterfaceId':'eni-1',"
		       "'Type':'network-interface','OwnerId':'1'},{'TrafficMirrorTargetId':'tmt-2',"
		       "'NetworkLoadBalancerArn':'arn:aws:elasticloadbalancing:x','Type':'network-load-balancer'},"
		       "{'TrafficMirrorTargetId':'tmt-3','GatewayLoadBalancerEndpointId':'vpce-1',"
		       "'Type':'gateway-load-balancer-endpoint'}],"
		       "'TrafficMirrorSessions':[{'TrafficMirrorSessionId':'tms-1','TrafficMirrorTargetId':'tmt-1',"
		       "'TrafficMirrorFilterId':'tmf-1','NetworkInterfaceId':'eni-2','OwnerId':'1','PacketLength':25,"
		       "'SessionNumber':1,'VirtualNetworkId':7159709,'Description':'s','Tags':[]}],"
		       "'Vpcfw':{'PcapTargets':[{'TrafficMirrorTargetId':'tmt-2','Path':'/var/lib/m.pcap',"
		       "'RotateBytes':1048576}],'MirrorTargetAddresses':[{'TrafficMirrorTargetId':'tmt-3',"
		       "'Address':'2001:db8::9'}],'DropCapture':{'Path':'/var/lib/drops.pcap','SnapLength':1500}}}");
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.n_mirror_filters, 1);
	const struct m_mirror_filter *f = &m.mirror_filters[0];
	ck_assert_int_eq(f->n_in, 1);
	ck_assert_int_eq(f->n_out, 1);
	ck_assert(f->in[0].accept);
	ck_assert_uint_eq(f->in[0].number, 100);
	ck_assert_int_eq(f->in[0].proto, 6);
	ck_assert(f->in[0].has_dports && f->in[0].has_sports);
	ck_assert_uint_eq(f->in[0].dport_from, 22);
	ck_assert_uint_eq(f->in[0].sport_from, 1024);
	ck_assert_uint_eq(f->in[0].sport_to, 65535);
	ck_assert_int_eq(cidr_user_len(&f->in[0].dst), 24);
	ck_assert(!f->out[0].accept);
	ck_assert_int_eq(f->out[0].proto, RULE_PROTO_ALL);
	ck_assert(!f->out[0].has_dports);
	ck_assert_int_eq(f->out[0].src.family, FAMILY_V6);
	ck_assert_int_eq(m.n_mirror_targets, 3);
	ck_assert_str_eq(m.mirror_targets[0].eni_id, "eni-1");
	ck_assert_ptr_null(m.mirror_targets[1].eni_id);
	ck_assert_str_eq(m.mirror_targets[1].lb, "arn:aws:elasticloadbalancing:x");
	ck_assert_str_eq(m.mirror_targets[2].lb, "vpce-1");
	ck_assert_int_eq(m.n_mirror_sessions, 1);
	const struct m_mirror_session *s = &m.mirror_sessions[0];
	ck_assert_str_eq(s->id, "tms-1");
	ck_assert_str_eq(s->eni_id, "eni-2");
	ck_assert_uint_eq(s->number, 1);
	ck_assert_uint_eq(s->vni, 7159709);
	ck_assert_uint_eq(s->packet_length, 25);
	ck_assert_int_eq(m.vpcfw.n_pcap_targets, 1);
	ck_assert_str_eq(m.vpcfw.pcap_targets[0].path, "/var/lib/m.pcap");
	ck_assert_uint_eq(m.vpcfw.pcap_targets[0].rotate_bytes, 1048576);
	ck_assert_int_eq(m.vpcfw.n_mirror_addrs, 1);
	ck_assert_int_eq(m.vpcfw.mirror_addrs[0].family, FAMILY_V6);
	ck_assert_str_eq(m.vpcfw.drop_capture.path, "/var/lib/drops.pcap");
	ck_assert_uint_eq(m.vpcfw.drop_capture.snap_length, 1500);
	ck_assert_str_eq(m.vpcfw.drop_capture.where.path, "Vpcfw.DropCapture");
}
END_TEST

/* Vpcfw.Sync: the HA pair's keys, their defaults and what they become */
START_TEST(test_sync_keys)
{
	load("t.json", "{'Vpcfw':{'Sync':{'NodeId':2,'Peer':'2001:db8:ff::1','KeyFile':'/etc/vpcfw/sync.key'}}}");
	config_check(&m, &d);
	assert_clean();
	const struct m_sync *y = &m.vpcfw.sync;
	ck_assert(y->enabled);
	ck_assert_uint_eq(y->node_id, 2);
	ck_assert_int_eq(y->peer_family, FAMILY_V6);
	ck_assert_int_eq(y->listen_family, 0);
	ck_assert_uint_eq(y->port, 7710);
	ck_assert_str_eq(y->key_file, "/etc/vpcfw/sync.key");
	ck_assert_uint_eq(y->message_bytes, 1400);
	ck_assert_uint_eq(y->max_clock_skew, 60);
	ck_assert_uint_eq(y->ring_entries, 65536);
	model_free(&m);
	model_init(&m);
	load("t.json", "{'Vpcfw':{'Sync':{'NodeId':4294967295,'Peer':'10.9.0.2','Listen':'10.9.0.1',"
		       "'Port':9000,'KeyFile':'k','MessageBytes':9000,'MaxClockSkew':0,'RingEntries':1024}}}");
	config_check(&m, &d);
	assert_clean();
	ck_assert_uint_eq(y->node_id, 4294967295u);
	ck_assert_int_eq(y->listen_family, FAMILY_V4);
	ck_assert_uint_eq(y->port, 9000);
	ck_assert_uint_eq(y->message_bytes, 9000);
	ck_assert_uint_eq(y->max_clock_skew, 0);
	ck_assert_uint_eq(y->ring_entries, 1024);
	/* no Sync object: off */
	model_free(&m);
	model_init(&m);
	load("t.json", "{'Vpcfw':{}}");
	ck_assert(!m.vpcfw.sync.enabled);
}
END_TEST

/* describe-security-group-rules: a group not in SecurityGroups is made up
 * from its rules; the rules of a group that is are ignored (either order). */
START_TEST(test_security_group_rules)
{
	const char *rules =
		"{'SecurityGroupRules':["
		"{'SecurityGroupRuleId':'sgr-1','GroupId':'sg-r','IsEgress':false,'IpProtocol':'tcp',"
		"'FromPort':22,'ToPort':22,'CidrIpv4':'10.0.0.0/8'},"
		"{'GroupId':'sg-r','IsEgress':true,'IpProtocol':'-1','FromPort':-1,'ToPort':-1,'CidrIpv6':'::/0'},"
		"{'GroupId':'sg-r','IsEgress':false,'IpProtocol':'-1','ReferencedGroupInfo':{'GroupId':'sg-r','UserId':'1'}},"
		"{'GroupId':'sg-r','IsEgress':false,'IpProtocol':'udp','FromPort':53,'ToPort':53,'PrefixListId':'pl-1'},"
		"{'GroupId':'sg-s','IsEgress':false,'IpProtocol':'tcp','FromPort':1,'ToPort':1,'CidrIpv4':'1.1.1.1/32'}]}";
	const char *groups = "{'SecurityGroups':[{'GroupId':'sg-s','IpPermissions':[]}]}";

	load("a.json", rules);
	load("b.json", groups);
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.n_sgs, 2);
	const struct m_sg *r = &m.sgs[0], *s = &m.sgs[1];
	ck_assert_str_eq(r->id, "sg-r");
	ck_assert_int_eq(r->n_in, 3);
	ck_assert_int_eq(r->n_out, 1);
	ck_assert_int_eq(r->in[0].proto, PROTO_TCP);
	ck_assert_int_eq(r->in[0].from, 22);
	ck_assert_int_eq(r->in[0].peers[0].kind, PEER_CIDR);
	ck_assert_int_eq(r->in[1].peers[0].kind, PEER_GROUP);
	ck_assert_str_eq(r->in[1].peers[0].ref, "sg-r");
	ck_assert_int_eq(r->in[2].peers[0].kind, PEER_PREFIX_LIST);
	ck_assert_int_eq(r->in[2].index, 2);
	ck_assert_str_eq(r->in[2].where.path, "SecurityGroupRules[3]");
	ck_assert_int_eq(r->out[0].peers[0].cidr.family, FAMILY_V6);
	/* sg-s came from its rules first, then SecurityGroups replaced it */
	ck_assert_str_eq(s->id, "sg-s");
	ck_assert_int_eq(s->n_in, 0);
	ck_assert_str_eq(s->where.file, "b.json");

	/* the other order: the rules of a known group are ignored */
	model_free(&m);
	model_init(&m);
	load("b.json", groups);
	load("a.json", rules);
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.n_sgs, 2);
	ck_assert_str_eq(m.sgs[0].id, "sg-s");
	ck_assert_int_eq(m.sgs[0].n_in, 0);
	ck_assert_int_eq(m.sgs[1].n_in, 3);
	ck_assert_int_eq(m.sgs[1].in[0].n_peers, 1);
	ck_assert_int_eq(m.sgs[1].in[1].n_peers, 1);
}
END_TEST

/* An ignored rule (its group is known) must leave nothing behind for the
 * next one. */
START_TEST(test_security_group_rules_ignored_first)
{
	load("t.json", "{'SecurityGroups':[{'GroupId':'sg-s'}],'SecurityGroupRules':["
		       "{'GroupId':'sg-s','IsEgress':false,'IpProtocol':'-1','CidrIpv4':'1.0.0.0/8'},"
		       "{'GroupId':'sg-r','IsEgress':false,'IpProtocol':'-1','CidrIpv4':'2.0.0.0/8'}]}");
	assert_clean();
	ck_assert_int_eq(m.n_sgs, 2);
	ck_assert_int_eq(m.sgs[0].n_in, 0);
	ck_assert_int_eq(m.sgs[1].n_in, 1);
	ck_assert_int_eq(m.sgs[1].in[0].n_peers, 1);
	char b[CIDR_STRLEN];
	ck_assert_str_eq(cidr_format(&m.sgs[1].in[0].peers[0].cidr, b), "2.0.0.0/8");
}
END_TEST

/* describe-instances: interfaces only where NetworkInterfaces has none. */
START_TEST(test_reservations)
{
	const char *inst =
		"{'Reservations':[{'ReservationId':'r-1','Instances':[{'InstanceId':'i-1','SubnetId':'subnet-9',"
		"'VpcId':'vpc-9','NetworkInterfaces':["
		"{'NetworkInterfaceId':'eni-a','PrivateIpAddress':'10.0.0.5','Groups':[{'GroupId':'sg-1'}]},"
		"{'NetworkInterfaceId':'eni-b','SubnetId':'subnet-8','PrivateIpAddress':'10.0.0.6'}]}]}]}";
	const char *enis = "{'NetworkInterfaces':[{'NetworkInterfaceId':'eni-b','SubnetId':'subnet-7'}]}";

	load("r.json", inst);
	ck_assert_int_eq(m.n_enis, 2);
	ck_assert_str_eq(m.enis[0].subnet_id, "subnet-9");  /* from the instance */
	ck_assert_str_eq(m.enis[0].vpc_id, "vpc-9");
	ck_assert_str_eq(m.enis[0].instance_id, "i-1");
	ck_assert_str_eq(m.enis[0].where.path, "Reservations[0].Instances[0].NetworkInterfaces[0]");
	ck_assert_str_eq(m.enis[1].subnet_id, "subnet-8");  /* its own wins */
	load("n.json", enis);
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.n_enis, 2);
	ck_assert_str_eq(m.enis[1].subnet_id, "subnet-7");  /* replaced */
	ck_assert_str_eq(m.enis[1].where.file, "n.json");

	model_free(&m);
	model_init(&m);
	load("n.json", enis);
	load("r.json", inst);
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.n_enis, 2);
	ck_assert_str_eq(m.enis[0].id, "eni-b");
	ck_assert_str_eq(m.enis[0].subnet_id, "subnet-7");
	ck_assert_str_eq(m.enis[1].id, "eni-a");
}
END_TEST

START_TEST(test_merge_buffers)
{
	load("a.json", "{'Vpcs':[{'VpcId':'vpc-1','CidrBlock':'10.0.0.0/16'}],"
		       "'SecurityGroups':[{'GroupId':'sg-1'}],"
		       "'NetworkInterfaces':[{'NetworkInterfaceId':'eni-1','Groups':[{'GroupId':'sg-1'}]}]}");
	load("b.json", "{'Subnets':[{'SubnetId':'subnet-1','CidrBlock':'10.0.1.0/24'}],"
		       "'SecurityGroups':[{'GroupId':'sg-2'},{'GroupId':'sg-1'}]}");
	ck_assert_int_eq(m.n_vpcs, 1);
	ck_assert_int_eq(m.n_subnets, 1);
	ck_assert_int_eq(m.n_sgs, 3);
	ck_assert_str_eq(m.vpcs[0].where.file, "a.json");
	ck_assert_str_eq(m.subnets[0].where.file, "b.json");
	config_check(&m, &d);
	ck_assert_uint_eq(d.errors, 1);
	ck_assert(has(true, "b.json: SecurityGroups[1].GroupId: sg-1 is defined twice (first at a.json: SecurityGroups[0])"));
}
END_TEST

/* describe-instances is borrowed data: a bad value there drops that interface
 * with a warning (the AWS CLI documentation's own example has a typo) */
START_TEST(test_borrowed_interface)
{
	load("t.json", "{'Reservations':[{'Instances':[{'InstanceId':'i-1','NetworkInterfaces':["
		       "{'NetworkInterfaceId':'eni-1','PrivateIpAddress':'10-0-0-1'},"
		       "{'NetworkInterfaceId':'eni-2','PrivateIpAddress':'10.0.0.2'}]}]}]}");
	ck_assert_uint_eq(d.errors, 0);
	ck_assert(has(false, "t.json: Reservations[0].Instances[0].NetworkInterfaces[0].PrivateIpAddress: "
			     "\"10-0-0-1\" is not an IPv4 address; the interface is not taken from describe-instances"));
	ck_assert_int_eq(m.n_enis, 1);
	ck_assert_str_eq(m.enis[0].id, "eni-2");
}
END_TEST

/* a group id defined twice that no interface or rule uses decides nothing:
 * a warning (collections of examples reuse ids); used, it is an error */
START_TEST(test_unused_duplicate_group)
{
	load("t.json", "{'SecurityGroups':[{'GroupId':'sg-1'},{'GroupId':'sg-1'}]}");
	config_check(&m, &d);
	ck_assert_uint_eq(d.errors, 0);
	ck_assert(has(false, "t.json: SecurityGroups[1].GroupId: sg-1 is defined twice (first at t.json: "
			     "SecurityGroups[0]); no interface or rule uses it, so the first is kept"));
}
END_TEST

START_TEST(test_unknown_key_once)
{
	load("a.json", "{'RouteTables':[],'Tags':[],'TrafficMirrorSessions':[],'TrafficMirrorFilters':[],"
		       "'TrafficMirrorTargets':[]}");
	load("b.json", "{'RouteTables':[{'x':1}]}");
	ck_assert_uint_eq(d.errors, 0);
	ck_assert_uint_eq(d.warnings, 2);
	ck_assert(has(false, "a.json: RouteTables: unknown top-level key, ignored"));
	ck_assert(has(false, "a.json: Tags: unknown top-level key, ignored"));
}
END_TEST

START_TEST(test_unknown_fields_silent)
{
	load("t.json", "{'Vpcs':[{'VpcId':'vpc-1','Tags':[{'Key':'k'}],'State':'available','Whatever':{'a':[1]}}],"
		       "'Subnets':[{'SubnetId':'s-1','CidrBlock':null}]}");
	config_check(&m, &d);
	assert_clean();
	ck_assert(!m.subnets[0].has4); /* null is absent */
}
END_TEST

/* ------------------------------------------------------------ files and directories */

static char tmpdir[256];

static void put(const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	char *s = json(text);
	fputs(s, f);
	free(s);
	fclose(f);
}

static void make_tmp(void)
{
	const char *t = getenv("TMPDIR");
	snprintf(tmpdir, sizeof(tmpdir), "%s/check_config.XXXXXX", t && *t ? t : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void files_teardown(void)
{
	static const char *names[] = { "b.json", "a.json", ".hidden.json", "c.txt", "10-x.json",
				       "sub.json/z.json", "sub.json", "bad.json" };
	char path[512];
	if (tmpdir[0]) {
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
			remove(path); /* some do not exist */
		}
		rmdir(tmpdir);
		tmpdir[0] = '\0';
	}
	teardown();
}

START_TEST(test_directory)
{
	char path[512];
	make_tmp();
	put("b.json", "{'SecurityGroups':[{'GroupId':'sg-b'}]}");
	put("a.json", "{'SecurityGroups':[{'GroupId':'sg-a'}]}");
	put("10-x.json", "{'SecurityGroups':[{'GroupId':'sg-10'}]}");
	put(".hidden.json", "{'SecurityGroups':[{'GroupId':'sg-hidden'}]}");
	put("c.txt", "not json");
	snprintf(path, sizeof(path), "%s/sub.json", tmpdir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	put("sub.json/z.json", "{'SecurityGroups':[{'GroupId':'sg-z'}]}");

	ck_assert_uint_eq(config_load_path(&m, tmpdir, &d), 0);
	config_check(&m, &d);
	assert_clean();
	ck_assert_int_eq(m.n_sgs, 3);
	ck_assert_str_eq(m.sgs[0].id, "sg-10"); /* strcmp order: '1' < 'a' */
	ck_assert_str_eq(m.sgs[1].id, "sg-a");
	ck_assert_str_eq(m.sgs[2].id, "sg-b");
	snprintf(path, sizeof(path), "%s/a.json", tmpdir);
	ck_assert_str_eq(m.sgs[1].where.file, path);

	/* a file by name, and an error in it naming the file */
	put("bad.json", "{'Vpcs':[{'VpcId':1}]}");
	snprintf(path, sizeof(path), "%s/bad.json", tmpdir);
	ck_assert_uint_eq(config_load_path(&m, path, &d), 1);
	char want[600];
	snprintf(want, sizeof(want), "%s: Vpcs[0].VpcId: 1 is not a string", path);
	ck_assert(has(true, want));
}
END_TEST

START_TEST(test_missing_path)
{
	ck_assert_uint_eq(config_load_path(&m, "/nonexistent/vpcfw.json", &d), 1);
	ck_assert(has(true, "/nonexistent/vpcfw.json: cannot open: No such file or directory"));
}
END_TEST

START_TEST(test_empty_directory)
{
	make_tmp();
	ck_assert_uint_eq(config_load_path(&m, tmpdir, &d), 0);
	char want[300];
	snprintf(want, sizeof(want), "%s: no *.json file in this directory", tmpdir);
	ck_assert(has(false, want));
}
END_TEST

/* Bytes that are not text at all must be refused, never crash. */
START_TEST(test_binary_garbage)
{
	static const char junk[] = { '{', '"', 'V', 0, 'p', '"', ':', (char)0xff, '[' };
	ck_assert_uint_eq(config_load_buffer(&m, "j.json", junk, sizeof(junk), &d), 1);
	ck_assert_uint_eq(config_load_buffer(&m, "e.json", "", 0, &d), 1);
	ck_assert_uint_eq(config_load_buffer(&m, "n.json", "null", 4, &d), 1);
	ck_assert(has(true, "n.json: line 1 column 4: invalid JSON: *"));
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("bad");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_bad, 0, sizeof(bads) / sizeof(bads[0]));
	tcase_add_test(tc, test_all_errors_reported);
	tcase_add_test(tc, test_binary_garbage);
	suite_add_tcase(s, tc);

	tc = tcase_create("good");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_vpcfw_table);
	tcase_add_test(tc, test_vpcfw_per_source);
	tcase_add_test(tc, test_vpcfw_offload);
	tcase_add_test(tc, test_vpc_cidrs);
	tcase_add_test(tc, test_subnet);
	tcase_add_test(tc, test_nacl);
	tcase_add_test(tc, test_nacl_quota_warning);
	tcase_add_loop_test(tc, test_protocols, 0, sizeof(protos) / sizeof(protos[0]));
	tcase_add_test(tc, test_sg);
	tcase_add_test(tc, test_sg_batfish_edges);
	tcase_add_test(tc, test_eni);
	tcase_add_test(tc, test_eni_type_and_prefixes);
	tcase_add_test(tc, test_flowlogs_and_prefix_lists);
	tcase_add_test(tc, test_traffic_mirroring);
	tcase_add_test(tc, test_sync_keys);
	tcase_add_test(tc, test_security_group_rules);
	tcase_add_test(tc, test_security_group_rules_ignored_first);
	tcase_add_test(tc, test_reservations);
	tcase_add_test(tc, test_merge_buffers);
	tcase_add_test(tc, test_unknown_key_once);
	tcase_add_test(tc, test_borrowed_interface);
	tcase_add_test(tc, test_unused_duplicate_group);
	tcase_add_test(tc, test_unknown_fields_silent);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_checked_fixture(tc, setup, files_teardown);
	tcase_add_test(tc, test_directory);
	tcase_add_test(tc, test_missing_path);
	tcase_add_test(tc, test_empty_directory);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(config_suite());
}

#!/usr/bin/env python3
"""MaxMind DB files for tests/mmdb.rs, and what MaxMind's own reader says
about addresses in them: an implementation independent of ours.

    mmdb_oracle.py LAYOUT OUT.mmdb SEED COUNT

writes a database with the mmdb-writer package, then prints COUNT
addresses, one per line, as `redistribute geo lookup` prints them:
`ADDRESS<TAB>COUNTRY<TAB>REGION<TAB>CITY` (`-` for an empty part) or
`ADDRESS<TAB>unknown`. The place comes from the record that the maxminddb
package (MaxMind's reader) returns, as docs/aggregation.md defines it.

Layouts:

- city: GeoIP2 City records (country, registered_country, subdivisions,
  city with names by language, and fields a place does not use), IPv4 and
  IPv6 networks, some nested, in an IPv6 tree with IPv4 under ::/96 and
  the aliases MaxMind's databases have (::ffff:0:0/96, 2001::/32,
  2002::/16) pointing at that subtree.
- flat-country: ip-location-db's country build, {"country_code": "AU"},
  an IPv4 tree.
- flat-city: ip-location-db's city build (country_code, state1, state2,
  city, postcode, timezone, latitude, longitude), an IPv6 tree with IPv6
  networks only.
- ipv4-in-one-record: an IPv6 tree whose record for ::/64 holds ::/96,
  where lookups of IPv4 addresses end.
- asn: a GeoLite2 ASN database, whose records name no country.

The addresses are network edges, addresses inside networks, their
neighbours, random ones, and IPv4-mapped forms of IPv4 ones, whose place
is the IPv4 address's. None is in the alias blocks or ::/96: there
MaxMind's reader answers with IPv4 records, which redistribute
deliberately does not (tests/mmdb.rs checks that separately).
"""

import ipaddress
import random
import sys

import maxminddb
from mmdb_writer import MMDBWriter
from netaddr import IPSet

CITY_RECORDS = [
    {
        "city": {"geoname_id": 2655045, "names": {"en": "Boxford", "ru": "Боксфорд"}},
        "continent": {"code": "EU", "geoname_id": 6255148, "names": {"en": "Europe"}},
        "country": {"geoname_id": 2635167, "iso_code": "GB", "names": {"en": "United Kingdom"}},
        "location": {"accuracy_radius": 100, "latitude": 51.75, "longitude": -1.25},
        "postal": {"code": "OX1"},
        "registered_country": {"geoname_id": 3017382, "iso_code": "FR", "names": {"en": "France"}},
        "subdivisions": [
            {"geoname_id": 6269131, "iso_code": "ENG", "names": {"en": "England"}},
            {"geoname_id": 3333217, "iso_code": "WBK", "names": {"en": "West Berkshire"}},
        ],
    },
    {
        "city": {"names": {"de": "Melbourne", "en": "Melbourne"}},
        "country": {"iso_code": "AU", "is_in_european_union": False, "names": {"en": "Australia"}},
        "subdivisions": [{"iso_code": "VIC", "names": {"en": "Victoria"}}],
        "location": {"time_zone": "Australia/Melbourne"},
    },
    # No country: the registered one. No English names: the ISO code, and no city.
    {
        "city": {"names": {"de": "Zürich"}},
        "registered_country": {"iso_code": "CH", "names": {"en": "Switzerland"}},
        "subdivisions": [{"iso_code": "ZH", "names": {"de": "Zürich"}}],
    },
    {
        "city": {"geoname_id": 1850147, "names": {"en": "Tokyo", "ja": "東京"}},
        "country": {"iso_code": "JP", "names": {"ja": "日本"}},
    },
    {
        "city": {"names": {"en": "São Paulo"}},
        "country": {"iso_code": "BR"},
        "subdivisions": [{"names": {"en": "São Paulo"}}],
    },
    {
        "city": {"names": {"en": "Mountain View, CA"}},
        "country": {"iso_code": "US"},
        "registered_country": {"iso_code": "US"},
        "subdivisions": [{"iso_code": "CA", "names": {"en": "California"}}],
        "traits": {"is_anycast": True},
    },
    {"country": {"iso_code": "DE", "names": {"en": "Germany"}}},
    # Nothing that names a country: unknown.
    {"continent": {"code": "EU", "names": {"en": "Europe"}}},
    {"traits": {"is_anonymous_proxy": True}},
    {},
]

FLAT_COUNTRY_RECORDS = [{"country_code": code} for code in ["AU", "CN", "FR", "US", "ZZ"]]

FLAT_CITY_RECORDS = [
    {
        "city": "Melbourne",
        "country_code": "AU",
        "state1": "Victoria",
        "state2": "",
        "postcode": "3000",
        "timezone": "Australia/Melbourne",
        "latitude": -37.8,
        "longitude": 144.9,
    },
    {"city": "Kraków", "country_code": "PL", "state1": "Lesser Poland", "state2": "Kraków",
     "postcode": "", "timezone": "Europe/Warsaw"},
    {"city": "", "country_code": "NZ", "state1": "", "state2": "", "postcode": "", "timezone": ""},
    {"city": "Springfield", "country_code": "US", "state1": "", "state2": "",
     "postcode": "", "timezone": ""},
]

# Where an IPv6 tree's aliases of its IPv4 subtree start.
ALIASES = [
    ipaddress.ip_network("::ffff:0:0/96"),
    ipaddress.ip_network("2001::/32"),
    ipaddress.ip_network("2002::/16"),
]
IPV4_SUBTREE = ipaddress.ip_network("::/96")


def random_networks(rng, version, count, prefixes, within):
    """Networks of the given family, some nested in others, none touching an alias."""
    bits = 32 if version == 4 else 128
    networks = []
    while len(networks) < count:
        parents = [network for network in networks if network.prefixlen < bits]
        if parents and rng.random() < 0.3:
            parent = rng.choice(parents)
            prefix = rng.randint(parent.prefixlen + 1, min(parent.prefixlen + 12, bits))
            address = int(parent.network_address) + rng.getrandbits(bits - parent.prefixlen)
        else:
            prefix = rng.randint(*prefixes)
            address = int(within.network_address) + rng.getrandbits(bits - within.prefixlen)
        network = ipaddress.ip_network((address, prefix), strict=False)
        if version == 6 and any(network.overlaps(alias) for alias in ALIASES + [IPV4_SUBTREE]):
            continue
        networks.append(network)
    # Wider first: mmdb-writer splits a wider network around narrower ones
    # inserted after it, while a wider one inserted later replaces them.
    return sorted(networks, key=lambda network: network.prefixlen)


def insert(writer, network, record):
    writer.insert_network(IPSet([str(network)]), record)


def node_at(writer, network, create):
    """The tree node at the end of a network's prefix."""
    bits = int(network.network_address)
    node = writer.tree
    for depth in range(network.prefixlen):
        bit = (bits >> (127 - depth)) & 1
        node = node.get_or_create(bit) if create else node[bit]
    return node


def graft_aliases(writer):
    """Points the alias networks at the IPv4 subtree, as MaxMind's writer does."""
    ipv4 = node_at(writer, IPV4_SUBTREE, create=False)
    for alias in ALIASES:
        parent = ipaddress.ip_network((alias.network_address, alias.prefixlen - 1), strict=False)
        bit = (int(alias.network_address) >> (128 - alias.prefixlen)) & 1
        node_at(writer, parent, create=True)[bit] = ipv4


def write(layout, path, rng):
    """Writes the database and returns the networks inserted."""
    v4_space = ipaddress.ip_network("0.0.0.0/0")
    v6_space = ipaddress.ip_network("2000::/3")
    if layout == "city":
        writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City")
        networks = random_networks(rng, 4, 300, (8, 32), v4_space)
        networks += random_networks(rng, 6, 200, (20, 128), v6_space)
        for network in networks:
            insert(writer, network, rng.choice(CITY_RECORDS))
        graft_aliases(writer)
    elif layout == "flat-country":
        writer = MMDBWriter(ip_version=4, database_type="country ipv4")
        networks = random_networks(rng, 4, 300, (8, 32), v4_space)
        for network in networks:
            insert(writer, network, rng.choice(FLAT_COUNTRY_RECORDS))
    elif layout == "flat-city":
        writer = MMDBWriter(ip_version=6, database_type="city ipv6")
        networks = random_networks(rng, 6, 300, (16, 128), v6_space)
        for network in networks:
            insert(writer, network, rng.choice(FLAT_CITY_RECORDS))
    elif layout == "ipv4-in-one-record":
        writer = MMDBWriter(ip_version=6, database_type="GeoIP2-Country")
        networks = [ipaddress.ip_network("::/64")] + random_networks(rng, 6, 50, (20, 64), v6_space)
        insert(writer, networks[0], {"country": {"iso_code": "AQ"}})
        for network in networks[1:]:
            insert(writer, network, rng.choice(CITY_RECORDS))
        # IPv4 addresses end in the ::/64 record; pick some as if it were IPv4's.
        networks.append(ipaddress.ip_network("0.0.0.0/0"))
    elif layout == "asn":
        writer = MMDBWriter(ip_version=4, database_type="GeoLite2-ASN")
        networks = random_networks(rng, 4, 20, (8, 24), v4_space)
        for network in networks:
            insert(writer, network, {"autonomous_system_number": 1221,
                                     "autonomous_system_organization": "Telstra"})
    else:
        sys.exit(f"unknown layout {layout}")
    writer.to_db_file(path)
    if layout == "city":
        # The aliases answer as the IPv4 subtree does, which is why they must
        # not become ranges of their own.
        reader = maxminddb.open_database(path)
        ipv4 = next(network for network, _ in reader if network.version == 4).network_address
        for alias in alias_forms(ipv4):
            assert reader.get(alias) == reader.get(ipv4), alias
    return networks


def mapped(ipv4):
    """::ffff:a.b.c.d (Python 3.13 has IPv4Address.ipv6_mapped)."""
    return ipaddress.IPv6Address((0xFFFF << 32) | int(ipv4))


def alias_forms(ipv4):
    """An IPv4 address as the alias blocks hold it: mapped, Teredo, 6to4."""
    number = int(ipv4)
    return [
        mapped(ipv4),
        ipaddress.IPv6Address((0x2001_0000 << 96) | (number << 64)),
        ipaddress.IPv6Address((0x2002 << 112) | (number << 80)),
    ]


def place(record):
    """COUNTRY, REGION, CITY as docs/aggregation.md defines them, or None."""
    if not isinstance(record, dict):
        return None

    def field(value, *path):
        for key in path:
            if isinstance(key, int):
                value = value[key] if isinstance(value, list) and len(value) > key else None
            else:
                value = value.get(key) if isinstance(value, dict) else None
        return value if isinstance(value, str) else ""

    country = (
        field(record, "country", "iso_code")
        or field(record, "registered_country", "iso_code")
        or field(record, "country_code")
    )
    if not country:
        return None
    if isinstance(record.get("subdivisions"), list) and record["subdivisions"]:
        region = field(record, "subdivisions", 0, "names", "en") or field(
            record, "subdivisions", 0, "iso_code"
        )
    else:
        region = field(record, "state1")
    city = field(record, "city", "names", "en") or field(record, "city")
    return country, region, city


def line(address, record):
    found = place(record)
    if found is None:
        return f"{address}\tunknown"
    return "\t".join([str(address)] + [part or "-" for part in found])


def in_alias(address):
    return address.version == 6 and any(
        address in block for block in ALIASES + [IPV4_SUBTREE]
    )


def expect(path, networks, rng, count):
    """Prints COUNT addresses around `networks` with what the reader says of them."""
    reader = maxminddb.open_database(path)
    families = sorted({network.version for network in networks})
    candidates = []
    while len(candidates) < count:
        network = rng.choice(networks)
        bits = network.max_prefixlen
        first, last = int(network.network_address), int(network.broadcast_address)
        kind = rng.randrange(6)
        if kind == 0:
            number = first
        elif kind == 1:
            number = last
        elif kind == 2:
            number = (first - 1) % (1 << bits)
        elif kind == 3:
            number = (last + 1) % (1 << bits)
        elif kind == 4:
            number = rng.randint(first, last)
        else:
            bits = 32 if rng.choice(families) == 4 else 128
            number = rng.getrandbits(bits)
            if bits == 128 and rng.random() < 0.8:
                number = (1 << 125) | rng.getrandbits(125)  # 2000::/3
        address = ipaddress.IPv4Address(number) if bits == 32 else ipaddress.IPv6Address(number)
        if in_alias(address):
            continue
        # (as written, as looked up)
        candidates.append((address, address))
        if address.version == 4 and rng.random() < 0.1:
            candidates.append((mapped(address), address))
    for written, looked_up in candidates[:count]:
        print(line(written, reader.get(looked_up)))


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    layout, path, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    networks = write(layout, path, rng)
    expect(path, networks, rng, count)


if __name__ == "__main__":
    main()

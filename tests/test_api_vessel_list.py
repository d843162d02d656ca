"""``GET /vessels`` answers at most ``limit`` vessels (the newest heard) and says how many
matched: one request for a flooded picture returned 56 MB in 2.3-3.4 s, holding the event
loop (and ``/health``) that long."""

from __future__ import annotations

from pathlib import Path

from api.picture import LivePicture
from ingest.report import Report
from tests.api_helpers import T0, headers, pos, rig

N = 30


async def test_the_list_is_cut_at_limit_to_the_newest_and_says_so(tmp_path: Path) -> None:
    async with rig(tmp_path) as api:
        for n in range(N):  # heard in turn: the last one is the newest
            api.feed(pos(244000000 + n, T0 + n, -23.83, 151.27 + n * 1e-3))
        h = headers("viewer")
        whole = (await api.client.get("/vessels", headers=h)).json()
        assert (whole["count"], whole["total"], whole["truncated"]) == (N, N, False)
        cut = (await api.client.get("/vessels", params={"limit": 10}, headers=h)).json()
        assert (cut["count"], cut["total"], cut["truncated"]) == (10, N, True)
        assert [v["mmsi"] for v in cut["vessels"]] == [244000000 + n
                                                      for n in range(N - 1, N - 11, -1)]
        geo = (await api.client.get("/vessels", params={"limit": 3, "format": "geojson"},
                                    headers=h)).json()
        assert (geo["count"], geo["total"], geo["truncated"]) == (3, N, True)
        assert [f["id"] for f in geo["features"]] == [244000029, 244000028, 244000027]
        filtered = (await api.client.get("/vessels", params={"limit": 3, "bbox":
                                         "151.26,-23.9,151.2725,-23.8"}, headers=h)).json()
        assert (filtered["count"], filtered["total"], filtered["truncated"]) == (3, 3, False)
        for bad in (0, 20_001):
            resp = await api.client.get("/vessels", params={"limit": bad}, headers=h)
            assert resp.status_code == 422, bad


def test_the_picture_holds_at_most_max_vessels_and_drops_evicted_ones() -> None:
    """Stations the rules never judge (base stations, AtoN) are bound too: their MMSIs can
    be forged as well."""
    picture = LivePicture(900.0, max_vessels=5)
    for n in range(20):
        picture.on_report(Report(mmsi=2_000_000 + n, msg_type=4, time=T0 + n,
                                 time_source="tagblock", sources=["rx1"], nmea=[],
                                 lat=-23.8, lon=151.3))
    assert len(picture) == 5
    picture.drop_vessels([2_000_000, 2_000_001])
    assert len(picture) == 3
    refused = pos(244000001, T0 + 30, -23.83, 151.27)
    refused.extra["not_admitted"] = True  # as the rules mark it beyond their bound
    picture.on_report(refused)
    assert picture.vessel(244000001) is None

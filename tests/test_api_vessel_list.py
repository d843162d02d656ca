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


async def test_base_stations_and_aton_are_no_vessels_and_cannot_move_or_rename_one(
        tmp_path: Path) -> None:
    """A type 4 or 21 made an entry of /vessels, or moved and renamed the vessel whose MMSI
    it carried, which the rules (position_jump, identity_change) never judge: they take
    station messages for no vessel. A virtual AtoN marking a wreck is no vessel either."""
    async with rig(tmp_path) as api:
        api.feed(pos(244123456, T0, -23.83, 151.27))
        forged = pos(244123456, T0 + 1, -20.0, 150.0, msg_type=21)
        forged.shipname = "WRECK"
        api.feed(forged)
        api.feed(pos(244123456, T0 + 2, -21.0, 150.0, msg_type=4))
        aton = pos(992446000, T0 + 3, -23.84, 151.28, msg_type=21, virtual_aid=True)
        aton.shipname = "WRECK W"
        api.feed(aton)
        api.feed(pos(5031234, T0 + 4, -23.85, 151.29, msg_type=4))
        h = headers("viewer")
        listed = (await api.client.get("/vessels", headers=h)).json()
        assert [(v["mmsi"], v["lat"], v["shipname"], v["msg_type"])
                for v in listed["vessels"]] == [(244123456, -23.83, None, 1)]
        await api.store.flush()
        for station in (992446000, 5031234):
            resp = await api.client.get(f"/vessels/{station}", headers=h)
            assert resp.status_code == 404, station
        # Nor the store's vessel record (what /vessels/{mmsi} shows once it leaves the
        # picture) takes an AtoN's name; the positions table keeps every message, as heard.
        assert (await api.store.vessel(244123456)) is None
        assert await api.store.position_count(244123456) == 3


def test_the_picture_holds_at_most_max_vessels_and_drops_evicted_ones() -> None:
    picture = LivePicture(900.0, max_vessels=5)
    for n in range(20):
        picture.on_report(Report(mmsi=244_000_000 + n, msg_type=18, time=T0 + n,
                                 time_source="tagblock", sources=["rx1"], nmea=[],
                                 lat=-23.8, lon=151.3))
    assert len(picture) == 5
    picture.drop_vessels([244_000_000, 244_000_001])
    assert len(picture) == 3
    refused = pos(244000001, T0 + 30, -23.83, 151.27)
    refused.extra["not_admitted"] = True  # as the rules mark it beyond their bound
    picture.on_report(refused)
    assert picture.vessel(244000001) is None

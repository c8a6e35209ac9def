"""Reverse-geocoding speed on random points, and the ratios of geoscout's choices vs the plain ones, one run.

    python benchmarks/bench_places.py [N=100000] [--land-mask]

Prints: cold table loads, reverse_geocode / country_of / is_land throughput on N points uniform on
the sphere; tiled vs untiled STRtree point-in-polygon (same answers); the GeoNames cKDTree vs
``reverse_geocoder.RGeocoder(mode=1)``; with ``--land-mask`` also the bit-packed memory-mapped land
mask vs ``import global_land_mask`` (that import needs ~1 GB of RAM).
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 100_000
    rng = np.random.default_rng(0)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)

    import shapely

    from geoscout.places import cities, countries, country_of, is_land, reverse_geocode

    t = time.perf_counter()
    countries._tables()
    t_poly = time.perf_counter() - t
    t = time.perf_counter()
    cities._table()
    t_city = time.perf_counter() - t
    is_land(0.0, 0.0)
    print(f"table loads (cache warm if run before): polygons {t_poly:.2f} s, GeoNames {t_city:.2f} s")

    t = time.perf_counter()
    df = reverse_geocode(lat, lon)
    t_rg = time.perf_counter() - t
    t = time.perf_counter()
    codes = country_of(lat, lon)
    t_co = time.perf_counter() - t
    t = time.perf_counter()
    is_land(lat, lon)
    t_land = time.perf_counter() - t
    print(
        f"{n} points: reverse_geocode {t_rg:.2f} s ({n / t_rg:,.0f} pts/s), country_of {t_co:.2f} s, "
        f"is_land {t_land:.3f} s; {df['country'].notna().mean():.1%} with a country"
    )

    # tiled STRtree (ours) vs one tree over whole polygon parts
    shapes = countries.country_polygons()
    parts, owner = shapely.get_parts([s.geometry for s in shapes], return_index=True)
    m = min(n, 20_000)
    pts = shapely.points(lon[:m], lat[:m])
    t = time.perf_counter()
    tree = shapely.STRtree(parts)
    pi, gi = tree.query(pts, predicate="intersects")
    t_plain = time.perf_counter() - t
    plain = np.full(m, None, dtype=object)
    plain[pi] = np.array([shapes[o].iso2 for o in owner[gi]], dtype=object)
    t = time.perf_counter()
    ours = country_of(lat[:m], lon[:m], coast_km=0)
    t_tiled = time.perf_counter() - t
    same = np.mean(plain == ours)
    print(
        f"point-in-polygon on {m} points: untiled {t_plain:.2f} s, tiled {t_tiled:.3f} s, "
        f"speed-up x{t_plain / t_tiled:.1f}, same answer {same:.4%}"
    )

    # nearest GeoNames place: our cKDTree on unit vectors vs reverse_geocoder (single process)
    import reverse_geocoder

    k = min(n, 20_000)
    geo = reverse_geocoder.RGeocoder(mode=1, verbose=False)
    t = time.perf_counter()
    geo.query(list(zip(lat[:k], lon[:k])))
    t_rg1 = time.perf_counter() - t
    t = time.perf_counter()
    cities.nearest_cities(lat[:k], lon[:k], codes[:k])
    t_ours = time.perf_counter() - t
    print(
        f"nearest city on {k} points: reverse_geocoder {t_rg1:.2f} s, ours (country-aware) {t_ours:.2f} s, "
        f"ratio x{t_rg1 / t_ours:.1f}"
    )

    if "--land-mask" in sys.argv:
        import resource

        from geoscout.places.land import land_mask

        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        from global_land_mask import globe

        t_imp = time.perf_counter() - t
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        same = np.mean(globe.is_land(lat.copy(), lon.copy()) == land_mask(lat, lon))
        print(
            f"land mask: `import global_land_mask` {t_imp:.2f} s and +{rss1 - rss0:.0f} MiB peak; "
            f"packed memmap lookup {t_land:.3f} s; identical {same:.4%}"
        )


if __name__ == "__main__":
    main()

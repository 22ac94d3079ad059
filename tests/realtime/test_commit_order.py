"""Positions follow commit order: a transaction that started writing first but
commits last gets the higher position, and no reader ever sees a position
without every lower one (so a cursor never skips a late committer)."""

import random
import threading

import psycopg

from tests.support.realtime import head


def test_a_late_committer_gets_a_later_position(db_url):
    with psycopg.connect(db_url, autocommit=True) as setup:
        esco = setup.execute("INSERT INTO flows.escos (code, name) VALUES ('ORD', 'o') RETURNING id").fetchone()[0]
        meters = [setup.execute("SELECT api.register_meter(serial => %s, esco => %s) ->> 'id'",
                                (f"EML37000000{i:02}", esco)).fetchone()[0] for i in range(2)]
    start = head(db_url)
    with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
        first.execute("UPDATE flows.meter_shadows SET balance = 1 WHERE id = %s", (meters[0],))  # writes first
        second.execute("UPDATE flows.meter_shadows SET balance = 2 WHERE id = %s", (meters[1],))
        second.commit()
        seen = head(db_url)
        first.commit()
    with psycopg.connect(db_url) as conn:
        order = conn.execute("SELECT key FROM flows.realtime_changes(%s, %s) ORDER BY commit_position",
                             (start, head(db_url))).fetchall()
    assert seen == start + 1 and head(db_url) == start + 2
    assert [row[0] for row in order] == [meters[1], meters[0]], "numbered in commit order, not write order"


def test_no_reader_sees_a_gap(db_url):
    with psycopg.connect(db_url, autocommit=True) as setup:
        esco = setup.execute("INSERT INTO flows.escos (code, name) VALUES ('GAP', 'g') RETURNING id").fetchone()[0]
        meters = [setup.execute("SELECT api.register_meter(serial => %s, esco => %s) ->> 'id'",
                                (f"EML37100000{i:02}", esco)).fetchone()[0] for i in range(8)]
    base = head(db_url)
    stop, gaps, reads = threading.Event(), [], []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        with psycopg.connect(db_url) as conn:
            for _ in range(40):
                conn.execute("UPDATE flows.meter_shadows SET csq = %s WHERE id = %s",
                             (rng.randrange(31), rng.choice(meters)))
                if rng.random() < 0.1:
                    conn.rollback()  # aborted transactions leave no position behind
                else:
                    conn.commit()

    def reader() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not stop.is_set():
                visible, count = conn.execute(
                    "SELECT flows.realtime_head(), count(*) FROM flows.realtime_commits"
                    " WHERE position > %s AND position <= flows.realtime_head()", (base,)).fetchone()
                reads.append(visible)
                if count != visible - base:
                    gaps.append((visible, count))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    watcher.join()
    assert not gaps, f"a reader saw a position without all lower ones: {gaps[:5]}"
    with psycopg.connect(db_url) as conn:
        positions = [r[0] for r in conn.execute(
            "SELECT position FROM flows.realtime_commits WHERE position > %s ORDER BY committed_at", (base,))]
    assert positions == sorted(positions) == list(range(base + 1, base + 1 + len(positions)))
    assert len(set(reads)) > 10, "the reader watched the log grow"

"""Write the noisy-neighbour traffic as JSON lines, in time order, for `dccgate send --rate`.

    python docs/examples/noisy_neighbour.py --seconds 10 > /tmp/noisy.jsonl
    dccgate send /tmp/noisy.jsonl --rate 660 --summary

User A sends 500 requests/s (10x its allocation of 50/s); B and C 80/s each (under their
100/s). Read Instantaneous Import Registers (4.1.1, CV 1) to a different meter each time.
"""

import argparse
import json

USERS = {
    "90-B3-D5-1F-30-0A-00-00": 500,
    "90-B3-D5-1F-30-0B-00-00": 80,
    "90-B3-D5-1F-30-0C-00-00": 80,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    total = sum(USERS.values())
    owed = dict.fromkeys(USERS, 0.0)
    for counter in range(1, args.seconds * total + 1):
        # Interleave the Users in proportion to their rates, as they would arrive.
        for user, rate in USERS.items():
            owed[user] += rate / total
        user = max(owed, key=owed.__getitem__)
        owed[user] -= 1
        octets = [counter >> shift & 255 for shift in (24, 16, 8, 0)]
        target = "00-DB-" + "-".join(f"{o:02X}" for o in octets) + "-00-01"
        print(
            json.dumps(
                {
                    "request_id": f"{user}:{target}:{counter}",
                    "user_role": "IS",
                    "srv": "4.1.1",
                    "command_variant": 1,
                }
            )
        )


if __name__ == "__main__":
    main()

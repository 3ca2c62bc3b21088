"""A spec written with anchors (`x-` keys, `<<:`), templates (`extends:`) and an included file,
and the same spec written out: every node must build the two alike."""

import re

TEMPLATES = """\
x-base: &base
  environment: {LEVEL: base, KEPT: from-anchor}
x-tested:
  extends: x-step
  retry: 1
"""
WITH_REUSE = """\
include: [ci/templates.yml]
steps:
  - name: one
    <<: *base
    commands: ['echo "one $LEVEL $KEPT $SHARED"']
  - name: two
    extends: x-tested
    environment: {LEVEL: two}
    commands: ['echo "two $LEVEL $KEPT $SHARED"']
"""
INCLUDED = """\
x-step:
  image: pbft-ci/busybox:latest
  environment: {KEPT: from-template}
environment: {SHARED: included}
"""
WRITTEN_OUT = """\
environment: {SHARED: included}
steps:
  - name: one
    environment: {LEVEL: base, KEPT: from-anchor}
    commands: ['echo "one $LEVEL $KEPT $SHARED"']
  - name: two
    image: pbft-ci/busybox:latest
    environment: {KEPT: from-template, LEVEL: two}
    retry: 1
    commands: ['echo "two $LEVEL $KEPT $SHARED"']
"""


def comparable(text: str) -> list[str]:
    """A build log's lines that every honest node and every way of writing the spec must share:
    not its header (build id), its commit, nor the times: the steps' durations and the commit's
    own (SOURCE_DATE_EPOCH), which differs between two forms' commits made a second apart."""
    return [re.sub(r"SOURCE_DATE_EPOCH=\d+", "SOURCE_DATE_EPOCH=<the commit's>", line.split(" duration_ms")[0])
            for line in text.splitlines()[2:]]

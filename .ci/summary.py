"""Sum the JUnit reports of every nox session into one closing line: 'N passed, N failed, N skipped'.

A report that cannot be read (a session killed while writing it, a full disk) counts as a failure and is
named, so the closing line never hides it behind a traceback.
"""

import pathlib
import sys
import xml.etree.ElementTree as ET

reports = sorted(pathlib.Path(sys.argv[1]).glob("*.xml"))
if not reports:
    print("no test reports were written")
    sys.exit(1)
passed = failed = skipped = 0
unreadable = []
for report in reports:
    try:
        suites = list(ET.parse(report).getroot().iter("testsuite"))
    except (ET.ParseError, OSError) as error:
        print(f"{report.stem}: unreadable report ({error})")
        unreadable.append(report.stem)
        continue
    for suite in suites:
        tests, errors = int(suite.get("tests", 0)), int(suite.get("errors", 0))
        fails, skips = int(suite.get("failures", 0)), int(suite.get("skipped", 0))
        print(f"{report.stem}: {tests - fails - errors - skips} passed, {fails + errors} failed, {skips} skipped")
        passed += tests - fails - errors - skips
        failed += fails + errors
        skipped += skips
print(f"{passed} passed, {failed} failed, {skipped} skipped"
      + (f", {len(unreadable)} unreadable reports: {', '.join(unreadable)}" if unreadable else ""))
sys.exit(1 if failed or unreadable else 0)

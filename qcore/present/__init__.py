"""How results are shown: the CSV, JSON and HTML report, the Pareto chart's positions and scale, the words.

:mod:`.report` (CSV, JSON, HTML, the text table), :mod:`.report_page` (the HTML report's summary and style),
:mod:`.chart_x` (where each row sits on its x axis), :mod:`.chart_scale` (units, axes, error bars, marks),
:mod:`.budget_chart` (a budget shaded on the Pareto chart), :mod:`.explain` (a row in plain language). Imports
anything below; only the CLI and the app import it.
"""

__all__ = []

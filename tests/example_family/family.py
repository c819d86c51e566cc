"""What the example family brings to the platform (the one object its entry point names)."""

from __future__ import annotations

from bot.pipeline.families import Family
from bot.pipeline.replies import ReplyCommand
from tests.example_family import counter
from tests.example_family.settings import ExampleSettings

FAMILIES = (
    Family(
        name="example-categories",
        handlers={"report.created": counter.handle_report},
        webhooks=frozenset({"report.created"}),
        commands=(counter.show_counts,),
        routes=counter.add_pages,
        doctor=counter.doctor,
        replies=(ReplyCommand("categories", "categories", counter.reply_counts, changes=False),),
        settings=(ExampleSettings,),
    ),
)

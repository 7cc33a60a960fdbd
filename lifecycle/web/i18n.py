"""Customer-facing page text in the customer's locale. English is the key; missing entries stay English.

Only the pages a customer sees (portal, notice, acknowledgement page) are translated; the rep and PM
pages are the vendor's own and stay English.
"""

from __future__ import annotations

from collections.abc import Callable

ZH_CN = {
    "Inbox": "收件箱",
    "unread": "未读",
    "No notices yet. We will write here (and by email) well before any milestone of the versions you run.":
        "暂无通知。在您所用版本的任何生命周期节点之前，我们都会提前在这里（并通过邮件）通知您。",
    "Calendar": "日历",
    "Every lifecycle milestone of the versions you run, kept up to date in your calendar app, with reminders "
    "at 6, 3 and 1 month and 1 week before.":
        "您所用版本的全部生命周期节点，自动同步到您的日历应用，并在节点前6个月、3个月、1个月和1周提醒。",
    "Subscribe in your calendar": "订阅到日历",
    "Download .ics": "下载 .ics",
    "This address is private to {name}: do not share it.": "此地址仅供{name}使用，请勿分享。",
    "Versions you run": "您使用的版本",
    "{label} in {days} days": "{days}天后{label}",
    "Recommended upgrade: {what}": "建议升级至：{what}",
    "Tell us your upgrade plan": "告诉我们您的升级计划",
    "Change your upgrade plan": "修改升级计划",
    "No deployments are registered for you. Ask your account rep if this is not right.":
        "系统中没有登记您的部署。如有不符，请联系您的客户经理。",
    "Your upgrade plan for {what} is saved — your account rep has been told.":
        "您对 {what} 的升级计划已保存，我们已通知您的客户经理。",
    "(all versions)": "（全部版本）",
    "{days} days": "{days}天",
    "withdrawn": "已撤销",
    "No milestones announced yet.": "尚未公布生命周期节点。",
    "Agreement:": "升级计划：",
    "target": "目标版本",
    "planned for": "计划于",
    "by": "确认人",
    "History ({n})": "历史记录（{n}）",
    "Your plan": "您的计划",
    "Acknowledged — we have read this": "已知悉",
    "Upgrade planned": "已计划升级",
    "Upgrade completed": "已完成升级",
    "We will not upgrade": "不打算升级",
    "Target version": "目标版本",
    "(recommended)": "（推荐）",
    "Planned date": "计划日期",
    "Your name": "您的姓名",
    "Your email": "您的邮箱",
    "Feedback on our lifecycle expectations": "对产品生命周期的意见和期望",
    "(optional)": "（选填）",
    "Is the notice period enough? Anything blocking the upgrade?": "通知期是否足够？升级是否有阻碍？",
    "Save upgrade plan": "保存升级计划",
    "{what}: your upgrade plan": "{what}：您的升级计划",
    "For {name}": "客户：{name}",
    "recommended upgrade:": "建议升级至：",
    "Thank you — your plan is recorded and your account rep has been told. You can change it here at any time.":
        "谢谢！您的计划已记录，我们已通知您的客户经理。您可以随时在此修改。",
    "Lifecycle milestones": "生命周期节点",
    "Tell us your plan": "告诉我们您的计划",
    "This page does not record anything until you press the button.": "在您点击按钮之前，本页面不会记录任何内容。",
    "← Inbox": "← 收件箱",
    "Received {when} UTC": "收到于 {when} UTC",
    "read {when} UTC": "已读于 {when} UTC",
    "Portal": "客户门户",
    "Log out": "退出",
    "This plan was already recorded: nothing has changed.": "此计划此前已记录，没有任何变更。",
    "You do not run this release.": "您未使用此版本。",
    "Every lifecycle milestone of this release has been withdrawn: there is no upgrade plan to record.":
        "此版本的全部生命周期节点均已撤销，无需记录升级计划。",
}

CATALOGS = {"zh-CN": ZH_CN}


def translator(locale: str | None) -> Callable[..., str]:
    catalog = CATALOGS.get(locale or "en", {})

    def t(text: str, **values) -> str:
        out = catalog.get(text, text)
        return out.format(**values) if values else out

    t.locale = locale or "en"  # type: ignore[attr-defined]
    return t

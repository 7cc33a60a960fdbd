"""Customer-facing page text in the customer's locale. English is the key; missing entries stay English.

Only the pages a customer sees (portal, notice, acknowledgement page, and the frame around them) are
translated; the rep and PM pages are the vendor's own and stay English. tests/test_page_strings.py
lists every string those pages use and fails on one without a zh-CN entry. Chinese text uses
full-width punctuation (：，（）).
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
    # page frame, titles and messages
    "Product Lifecycle": "产品生命周期",
    "Customer portal": "客户门户",
    "Back": "返回",
    "Not found": "未找到",
    "No such notice": "没有这条通知",
    "Thank you — we have recorded that you now run {what}.": "谢谢！我们已记录您现在使用 {what}。",
    "Your account rep has been told.": "我们已通知您的客户经理。",
    # inbox
    "Show": "显示",
    "Unread": "未读",
    "All": "全部",
    "Mark all read": "全部标为已读",
    "Every notice is marked read.": "所有通知均已标为已读。",
    "Nothing unread.": "没有未读通知。",
    "Show all notices": "显示全部通知",
    "later changed": "已变更",
    "later cancelled": "已取消",
    "Times are in your timezone, {tz}.": "时间均为您所在时区（{tz}）的时间。",
    "Pages": "分页",
    "← Newer": "← 较新",
    "Older →": "较早 →",
    "Page {n} of {total}": "第{n}页，共{total}页",
    "This notice was later changed.": "此通知的内容后来已变更。",
    "This notice was later cancelled.": "此通知后来已取消。",
    "Read the newer notice": "查看最新通知",
    "Received {when} ({tz})": "收到于 {when}（{tz}）",
    "read {when}": "已读于 {when}",
    # calendar
    "Get a new calendar link": "生成新的日历链接",
    "If the link was shared by mistake, get a new one: the old one stops working at once.":
        "如果链接被误分享，请生成新链接：旧链接将立即失效。",
    "Your calendar link has changed: the old one no longer works. Subscribe again with the new one.":
        "您的日历链接已更换，旧链接已失效。请使用新链接重新订阅。",
    # releases and plans
    "{label}: {date}": "{label}：{date}",
    "recorded {when} by {who}": "{when}由{who}记录",
    "({channel}, {who})": "（{channel}，{who}）",
    "web": "客户门户",
    "email-link": "邮件链接",
    "phone": "电话",
    "api": "API",
    "cli": "命令行",
    "import": "导入",
    "supported until {date}": "支持至{date}",
    "A planned upgrade needs a target version and a date. A date after the milestone is recorded, but we will "
    "keep reminding you.": "计划升级需要选择目标版本和日期。晚于节点日期的计划也会被记录，但我们会继续提醒您。",
    "Upgrade completed: we now run the target version (update our deployment)":
        "升级已完成：我们现在使用目标版本（更新部署记录）",
    "Recorded: you now run {what}.": "已记录：您现在使用 {what}。",
    "Your planned date is after the milestone: this plan is at risk, and we will keep reminding you until the "
    "date is before it.": "您的计划日期晚于节点日期：此计划存在风险，在日期提前到节点之前，我们会继续提醒您。",
    # refused plans (lifecycle.policy.PLAN_TEXTS) and form errors (pages.common.FIELD_ERRORS)
    "A planned upgrade needs a target version.": "计划升级需要选择目标版本。",
    "A planned upgrade needs a planned date.": "计划升级需要填写计划日期。",
    "{date} is in the past: a planned upgrade needs a date from today on.": "{date}已经过去：计划升级日期不能早于今天。",
    "There is no release {target} of this product.": "该产品没有 {target} 版本。",
    "{target} is not a later release than {version}: choose a newer version.":
        "{target}不比{version}更新：请选择更新的版本。",
    "{target} reaches its end of life on {end}, before the planned date {date}: choose a version that is still "
    "supported then.": "{target}的生命周期于{end}终止，早于计划日期{date}：请选择届时仍受支持的版本。",
    "Please enter a valid date.": "请输入有效的日期。",
    "Please enter a valid email address.": "请输入有效的邮箱地址。",
    "Tell us who agrees: a name or an email address (at most 200 characters).":
        "请告诉我们确认人：填写姓名或邮箱地址（不超过200个字符）。",
    "The feedback is too long or contains characters we cannot keep.": "反馈内容过长或包含无法保存的字符。",
    "Please choose your plan.": "请选择您的计划。",
    "Please choose a target version from the list.": "请从列表中选择目标版本。",
    "Please check the form and try again.": "请检查表单后重试。",
}

ZH_CN |= {  # the channels page
    "Notification channels": "通知渠道",
    "Channels": "通知渠道",
    "Email and this portal carry every notice. You can also receive them in Slack, in Microsoft Teams or at a "
    "signed webhook of your own.": "邮件和本门户会送达每一条通知。您还可以通过 Slack、Microsoft Teams 或您自己的签名 Webhook 接收通知。",
    "Your webhook's signing secret (shown only now; verify the webhook-signature header with it):":
        "您的 Webhook 签名密钥（仅显示这一次；请用它校验 webhook-signature 请求头）：",
    "The test message was accepted.": "测试消息已被接收。",
    "The test message failed:": "测试消息发送失败：",
    "The channel is removed.": "该渠道已删除。",
    "Your channels": "您的渠道",
    "Channel": "渠道",
    "Name": "名称",
    "Address": "地址",
    "State": "状态",
    "working": "正常",
    "untested": "尚未测试",
    "failing": "发送失败",
    "disabled": "已停用",
    "Send a test": "发送测试消息",
    "Remove": "删除",
    "No channels yet.": "尚未添加渠道。",
    "Add a channel": "添加渠道",
    "Webhook URL": "Webhook 地址",
    "Add channel": "添加渠道",
    "Signed webhook": "签名 Webhook",
    "Slack": "Slack",
    "Microsoft Teams": "Microsoft Teams",
}

CATALOGS = {"zh-CN": ZH_CN}


def translator(locale: str | None) -> Callable[..., str]:
    catalog = CATALOGS.get(locale or "en", {})

    def t(text: str, **values) -> str:
        out = catalog.get(text, text)
        return out.format(**values) if values else out

    t.locale = locale or "en"  # type: ignore[attr-defined]
    return t

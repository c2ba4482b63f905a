"""Which fetches of a /go/ link are people: real User-Agents of previewers, crawlers, scripts and browsers.

The previewers' strings are those their operators document or that they are seen sending; the
browsers' are current releases, including the in-app browsers of the apps partners' links are opened
from (people, though their apps also run previewers under other names).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crm_bridge.api.crawlers import automated_reason

LAYER = Path(__file__).parents[2] / "layers/shared"
CHROME = "131.0.6778.204"

PREVIEWERS = [
    pytest.param("TelegramBot (like TwitterBot)", id="telegram"),
    pytest.param("WhatsApp/2.23.20.0 A", id="whatsapp-android"),
    pytest.param("WhatsApp/2.24.6.77 i", id="whatsapp-ios"),
    pytest.param("WhatsApp/2.2411.2 W", id="whatsapp-web"),
    pytest.param("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", id="facebookexternalhit"),
    pytest.param("facebookexternalhit/1.1", id="facebookexternalhit-bare"),
    pytest.param("Facebot", id="facebot"),
    pytest.param("facebookcatalog/1.0", id="facebookcatalog"),
    pytest.param("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", id="slack-linkexpanding"),
    pytest.param("Slack-ImgProxy (+https://api.slack.com/robots)", id="slack-imgproxy"),
    pytest.param("Slackbot 1.0 (+https://api.slack.com/robots)", id="slackbot"),
    pytest.param("Twitterbot/1.0", id="twitterbot"),
    pytest.param(
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)", id="linkedinbot"
    ),
    pytest.param("Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", id="discordbot"),
    pytest.param(
        "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com",
        id="skype",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1"
        " Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
        id="imessage",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko)"
        f" Chrome/{CHROME} Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        id="googlebot-smartphone",
    ),
    pytest.param(
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1;"
        f" +http://www.google.com/bot.html) Chrome/{CHROME} Safari/537.36",
        id="googlebot-desktop",
    ),
    pytest.param("Googlebot/2.1 (+http://www.google.com/bot.html)", id="googlebot-classic"),
    pytest.param("Googlebot-Image/1.0", id="googlebot-image"),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko)"
        f" Chrome/{CHROME} Mobile Safari/537.36 (compatible; Google-InspectionTool/1.0;)",
        id="google-inspectiontool",
    ),
    pytest.param("APIs-Google (+https://developers.google.com/webmasters/APIs-Google.html)", id="apis-google"),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 7.0; SM-G930V Build/NRD90M) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/59.0.3071.125 Mobile Safari/537.36 (compatible; Google-Read-Aloud;"
        " +https://support.google.com/webmasters/answer/1061943)",
        id="google-read-aloud",
    ),
    pytest.param("GoogleOther", id="googleother"),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko)"
        f" Chrome/{CHROME} Mobile Safari/537.36 (compatible; GoogleOther)",
        id="googleother-smartphone",
    ),
    pytest.param(
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0;"
        " +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
        id="bingbot-desktop",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/116.0.1938.76 Mobile Safari/537.36 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        id="bingbot-mobile",
    ),
    pytest.param("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", id="bingbot-classic"),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) BingPreview/1.0b",
        id="bingpreview",
    ),
    pytest.param("msnbot/2.0b (+http://search.msn.com/msnbot.htm)", id="msnbot"),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1"
        " Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        id="applebot",
    ),
    pytest.param("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", id="yandexbot"),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 15_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Version/15.4 Mobile/15E148 Safari/604.1 (compatible; YandexMobileBot/3.0; +http://yandex.com/bots)",
        id="yandexmobilebot",
    ),
    pytest.param("Mozilla/5.0 (compatible; YandexImages/3.0; +http://yandex.com/bots)", id="yandeximages"),
    pytest.param(
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)", id="baiduspider"
    ),
    pytest.param("DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)", id="duckduckbot"),
    pytest.param("Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)", id="pinterestbot"),
    pytest.param("Pinterest/0.2 (+http://www.pinterest.com/bot.html)", id="pinterest"),
    pytest.param("Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)", id="redditbot"),
    pytest.param("Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)", id="embedly"),
    pytest.param("Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)", id="vkshare"),
    pytest.param("Viber", id="viber"),
    pytest.param("facebookexternalhit/1.1;line-poker/1.0", id="line"),
    pytest.param(
        "Mozilla/5.0 (compatible; Snap URL Preview Service; bot; snapchat; https://developers.snap.com/robots)",
        id="snapchat",
    ),
    pytest.param("http.rb/5.1.1 (Mastodon/4.2.1; +https://mastodon.social/)", id="mastodon-4.2"),
    pytest.param("Mastodon/4.3.2 (http.rb/5.2.0; +https://mastodon.social/) Bot", id="mastodon-4.3"),
    pytest.param("Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)", id="bluesky"),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0"
        " Safari/537.36 Edg/131.0.0.0 (compatible; MicrosoftPreview/2.0; +https://aka.ms/MicrosoftPreview)",
        id="teams-microsoftpreview",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/51.0.2704.103"
        " Safari/537.36 SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com",
        id="teams-skypeuripreview",
    ),
    pytest.param("Mozilla/5.0 (compatible; ZoomBot/1.0; +https://zoom.us/bot)", id="zoom"),
    pytest.param("kakaotalk-scrap/1.0; +https://devtalk.kakao.com/t/scrap/33984", id="kakaotalk"),
    pytest.param(
        "facebookexternalhit/1.1; kakaotalk-scrap/1.0; +https://devtalk.kakao.com/t/scrap/33984",
        id="kakaotalk-as-facebookexternalhit",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/49.0.2623.75"
        " Safari/537.36 Google Favicon",
        id="google-favicon",
    ),
]

SCRIPTS = [
    pytest.param("curl/8.5.0", id="curl"),
    pytest.param("Wget/1.21.4", id="wget"),
    pytest.param("python-requests/2.32.3", id="python-requests"),
    pytest.param("python-httpx/0.28.1", id="python-httpx"),
    pytest.param("Python-urllib/3.13", id="python-urllib"),
    pytest.param("Python/3.12 aiohttp/3.10.5", id="aiohttp"),
    pytest.param("Go-http-client/2.0", id="go"),
    pytest.param("okhttp/4.12.0", id="okhttp"),
    pytest.param("Java/17.0.9", id="java"),
    pytest.param("libwww-perl/6.72", id="libwww-perl"),
    pytest.param("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", id="node-fetch"),
    pytest.param("axios/1.7.7", id="axios"),
    pytest.param("PostmanRuntime/7.42.0", id="postman"),
    pytest.param("Scrapy/2.11.2 (+https://scrapy.org)", id="scrapy"),
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
        id="headless-chrome",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 7.0; Moto G (4)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/90.0.4420.0"
        " Mobile Safari/537.36 Chrome-Lighthouse",
        id="lighthouse-mobile",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/90.0.4420.0 Safari/537.36 Chrome-Lighthouse",
        id="lighthouse-desktop",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/136.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
        id="pagespeed-insights",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.22631; en-US) PowerShell/7.4.2", id="powershell-7"
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.19041.3031", id="windows-powershell"
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Darwin 21.6.0 Darwin Kernel Version 21.6.0: Mon Aug 22 20:20:05 PDT 2022;"
        " root:xnu-8020.140.49~2/RELEASE_ARM64_T8101; en-US) PowerShell/7.2.7",
        id="powershell-macos",
    ),
]

CRAWLERS = [
    pytest.param("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", id="ahrefs"),
    pytest.param("Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)", id="semrush"),
    pytest.param(
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        id="gptbot",
    ),
    pytest.param(
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
        id="claudebot",
    ),
    pytest.param(
        "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
        id="meta-externalagent",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36"
        " (compatible; Bytespider; spider-feedback@bytedance.com)",
        id="bytespider",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4"
        " Safari/605.1.15 (Amazonbot/0.1; +https://developer.amazon.com/support/amazonbot)",
        id="amazonbot",
    ),
    pytest.param("Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)", id="mj12bot"),
    pytest.param("Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", id="uptimerobot"),
    pytest.param("Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)", id="slurp"),
    pytest.param("Iframely/1.3.1 (+https://iframely.com/docs/about) Atlassian", id="iframely"),
    pytest.param("Mozilla/5.0 (compatible; archive.org_bot +http://archive.org/details/archive.org_bot)", id="archive"),
]

BROWSERS = [
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0"
        " Safari/537.36",
        id="chrome-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0"
        " Safari/537.36",
        id="chrome-mac",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        id="chrome-linux",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile"
        " Safari/537.36",
        id="chrome-android",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        id="chrome-ios",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0"
        " Safari/537.36 Edg/131.0.0.0",
        id="edge-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile"
        " Safari/537.36 EdgA/131.0.0.0",
        id="edge-android",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", id="firefox-windows"
    ),
    pytest.param("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", id="firefox-linux"),
    pytest.param("Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0", id="firefox-android"),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " FxiOS/133.0 Mobile/15E148 Safari/605.1.15",
        id="firefox-ios",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1"
        " Safari/605.1.15",
        id="safari-mac",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Version/18.1 Mobile/15E148 Safari/604.1",
        id="safari-iphone",
    ),
    pytest.param(
        "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.7"
        " Mobile/15E148 Safari/604.1",
        id="safari-ipad",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko)"
        " SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        id="samsung-internet",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0"
        " Safari/537.36 OPR/115.0.0.0",
        id="opera-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile"
        " Safari/537.36 OPR/86.0.4550.82886",
        id="opera-android",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0"
        " YaBrowser/24.10.0.0 Safari/537.36",
        id="yandex-browser",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 7.0; SM-G930F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/68.0.3440.91"
        " YandexSearch/7.16 Mobile Safari/537.36",
        id="yandex-app",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Version/17.5 Mobile/15E148 DuckDuckGo/7 Safari/605.1.15",
        id="duckduckgo-browser",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " GSA/343.0.695551749 Mobile/15E148 Safari/604.1",
        id="google-app-ios",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Mobile/15E148 [FBAN/FBIOS;FBAV/468.0.0.46.102;FBBV/637262711;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;"
        "FBSV/17.5;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/639123584]",
        id="facebook-ios",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like"
        " Gecko) Version/4.0 Chrome/125.0.6422.165 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/468.1.0.56.78;]",
        id="facebook-android",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Mobile/22G100 Safari/604.1 MetaIAB Facebook",
        id="facebook-metaiab",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 11; RMX1931 Build/RKQ1.200928.002; wv) AppleWebKit/537.36 (KHTML, like"
        " Gecko) Version/4.0 Chrome/93.0.4577.82 Mobile Safari/537.36 [FB_IAB/Orca-Android;FBAV/331.0.0.15.119;]",
        id="messenger-android",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Mobile/15E148 Instagram 337.0.3.23.54 (iPhone14,2; iOS 17_5_1; en_US; en; scale=3.00; 1170x2532;"
        " 615145478; IABMV/1)",
        id="instagram-ios",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240605.024; wv) AppleWebKit/537.36 (KHTML, like"
        " Gecko) Version/4.0 Chrome/126.0.6478.71 Mobile Safari/537.36 Instagram 337.0.0.35.102 Android"
        " (34/14; 420dpi; 1080x2205; Google/google; Pixel 8; shiba; shiba; en_US; 617458567)",
        id="instagram-android",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 13; SM-A536B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like"
        " Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36 Telegram-Android/10.6.2"
        " (Samsung SM-A536B; Android 13; SDK 33; AVERAGE)",
        id="telegram-android-webview",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Mobile/15E148 Safari Line/14.9.0",
        id="line-in-app",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Mobile/15E148 Snapchat/13.0.0.44 (like Safari/8618.2.12.10.5, panda)",
        id="snapchat-in-app",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Mobile/15E148 [Pinterest/iOS]",
        id="pinterest-in-app",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Mobile/15E148 [LinkedInApp]/9.30.6025",
        id="linkedin-in-app",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 14; SM-S928N Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like"
        " Gecko) Version/4.0 Chrome/130.0.6723.107 Mobile Safari/537.36 KAKAOTALK/11.2.2 (INAPP)",
        id="kakaotalk-in-app-android",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
        " Mobile/15E148 Safari/604.1 KAKAOTALK/11.2.2 (INAPP)",
        id="kakaotalk-in-app-ios",
    ),
]

UNUSUAL_PEOPLE = [
    pytest.param(
        "Mozilla/5.0 (Linux; Android 10; CUBOT_X30 Build/QP1A.190711.020; wv) AppleWebKit/537.36 (KHTML, like"
        " Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36",
        id="cubot-phone",
    ),
    pytest.param("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko", id="internet-explorer-11"),
    pytest.param(
        "Mozilla/5.0 (Mobile; LYF/F300B/LYF-F300B-001-01-15-130718-i; Android; rv:48.0) Gecko/48.0 Firefox/48.0"
        " KAIOS/2.5",
        id="kaios",
    ),
]
"""People whose User-Agent is not a plain browser's: crawlerdetect's list decides, and clears them."""


@pytest.mark.parametrize("user_agent", PREVIEWERS)
def test_a_link_previewer_is_named(user_agent: str) -> None:
    assert automated_reason("GET", user_agent) == "previewer"


@pytest.mark.parametrize("user_agent", SCRIPTS)
def test_an_http_library_or_headless_browser_is_a_script(user_agent: str) -> None:
    assert automated_reason("GET", user_agent) == "script"


@pytest.mark.parametrize("user_agent", CRAWLERS)
def test_the_long_tail_of_crawlers_comes_from_the_list(user_agent: str) -> None:
    assert automated_reason("GET", user_agent) == "crawler"


@pytest.mark.parametrize("user_agent", BROWSERS + UNUSUAL_PEOPLE)
def test_a_person_in_a_browser_or_an_in_app_browser_is_no_machine(user_agent: str) -> None:
    assert automated_reason("GET", user_agent) is None


@pytest.mark.parametrize("user_agent", [None, "", "   "])
def test_a_missing_or_blank_user_agent_is_named(user_agent: str | None) -> None:
    assert automated_reason("GET", user_agent) == "no_user_agent"


@pytest.mark.parametrize("user_agent", [BROWSERS[0].values[0], PREVIEWERS[0].values[0], None])
@pytest.mark.parametrize("method", ["HEAD", "head"])
def test_a_head_request_is_head_whatever_it_claims(method: str, user_agent: str | None) -> None:
    assert automated_reason(method, user_agent) == "head"


def test_a_browser_never_loads_the_crawler_list() -> None:
    """The list's regular expression costs ~25 ms to compile: a person's cold start must not pay it."""
    browsers = [param.values[0] for param in BROWSERS]
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(LAYER)!r})\n"
        "from crm_bridge.api.crawlers import automated_reason\n"
        f"assert all(automated_reason('GET', agent) is None for agent in {browsers!r})\n"
        "print('crawlerdetect' in sys.modules)\n"
    )
    completed = subprocess.run(  # noqa: S603 - this interpreter, a fixed probe
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "False"

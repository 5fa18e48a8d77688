// Mail merge's renderer: variables in headers and body, RFC 2047 for non-ASCII headers
// (decoded back with GMime's parser through smtpbulk_mailfile_parse()), and the refusals.
#include <gtest/gtest.h>

#include <string>

#include "smtpbulk.h"
#include "smtpbulk_send.h"

namespace {

struct Rendered {
  int rc;
  std::string text, missing;
};

Rendered render(const std::string& tpl, std::initializer_list<smtpbulk_var_t> vars) {
  char* out = nullptr;
  size_t len = 0;
  char missing[64];
  Rendered r;
  r.rc = smtpbulk_template_render(tpl.data(), tpl.size(), vars.begin(), vars.size(), &out,
                                  &len, missing, sizeof(missing));
  if (r.rc == 0) r.text.assign(out, len);
  r.missing = missing;
  free(out);
  return r;
}

}  // namespace

TEST(Template, AsciiValuesInHeadersAndBody) {
  auto r = render("From: news@example.com\nTo: {{ name }} <{{email}}>\nSubject: Hi {{name}}\n\n"
                  "Dear {{name}},\nyour code is {{code}}.\n",
                  {{"name", "Ann"}, {"email", "ann@example.org"}, {"code", "X-1"}});
  ASSERT_EQ(r.rc, 0);
  EXPECT_EQ(r.text, "From: news@example.com\nTo: Ann <ann@example.org>\nSubject: Hi Ann\n\n"
                    "Dear Ann,\nyour code is X-1.\n");
}

TEST(Template, NonAsciiHeadersAreEncodedTheBodyIsNot) {
  auto r = render("From: news@example.com\r\nTo: \"{{name}}\" <{{email}}>\r\n"
                  "Subject: Grüße, {{name}}\r\n\r\nHallo {{name}}\r\n",
                  {{"name", "Jürgen Müller"}, {"email", "jm@example.org"}});
  ASSERT_EQ(r.rc, 0);
  size_t body = r.text.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos) << r.text;
  std::string head = r.text.substr(0, body);
  for (unsigned char c : head) EXPECT_LT(c, 0x80) << head;
  EXPECT_NE(head.find("=?"), std::string::npos) << head;
  EXPECT_NE(head.find("<jm@example.org>"), std::string::npos) << head;
  EXPECT_NE(r.text.find("\r\n\r\nHallo Jürgen Müller\r\n"), std::string::npos) << r.text;
  // What a reader makes of it: the address and the name back.
  smtpbulk_mailfile_t m{};
  ASSERT_EQ(smtpbulk_mailfile_parse(r.text.data(), r.text.size(), nullptr, &m), 0);
  ASSERT_EQ(m.n_rcpts, 1u);
  EXPECT_STREQ(m.rcpts[0], "jm@example.org");
  smtpbulk_mailfile_free(&m);
}

TEST(Template, AMissingVariableIsNamed) {
  auto r = render("To: {{email}}\nSubject: {{ title }}\n\nx\n", {{"email", "a@example.org"}});
  EXPECT_EQ(r.rc, SMTPBULK_ENOVAR);
  EXPECT_EQ(r.missing, "title");
  r = render("To: a@example.org\n\nbody {{nope}}\n", {});
  EXPECT_EQ(r.rc, SMTPBULK_ENOVAR);
  EXPECT_EQ(r.missing, "nope");
}

TEST(Template, ALineBreakCannotAddAHeader) {
  auto r = render("To: {{email}}\nSubject: x\n\nbody\n",
                  {{"email", "a@example.org\nBcc: victim@example.net"}});
  EXPECT_EQ(r.rc, SMTPBULK_EHEADERVAL);
  r = render("To: a@example.org\nSubject: {{s}}\n\nbody\n", {{"s", "x\r\nBcc: v@example.net"}});
  EXPECT_EQ(r.rc, SMTPBULK_EHEADERVAL);
  // In the body a line break is only text.
  r = render("To: a@example.org\n\n{{lines}}\n", {{"lines", "one\ntwo"}});
  ASSERT_EQ(r.rc, 0);
  EXPECT_EQ(r.text, "To: a@example.org\n\none\ntwo\n");
}

TEST(Template, TextThatIsNoVariableStays) {
  auto r = render("To: a@example.org\n\n{{ }} {{a b}} {{x {{y}} }}\n{{", {{"y", "Y"}});
  ASSERT_EQ(r.rc, 0);
  EXPECT_EQ(r.text, "To: a@example.org\n\n{{ }} {{a b}} {{x Y }}\n{{");
}

TEST(Template, FoldedHeadersStayFolded) {
  auto r = render("To: a@example.org\nSubject: a long\n subject for {{n}}\n\nb\n", {{"n", "Bo"}});
  ASSERT_EQ(r.rc, 0);
  EXPECT_EQ(r.text, "To: a@example.org\nSubject: a long\n subject for Bo\n\nb\n");
}

TEST(Template, AnAddressHeaderThatIsNoAddressIsRefused) {
  auto r = render("To: {{name}}\n\nb\n", {{"name", "ü <"}});
  EXPECT_EQ(r.rc, SMTPBULK_EMESSAGE);
}
